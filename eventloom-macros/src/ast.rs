//! A typed view of the derive input: what each derive needs, borrowed from the original
//! `DeriveInput`, which stays at hand for spans and generics.

use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Member, Path, Type};

use crate::attr::{self, CommandAttrs, CommandFieldAttrs, EventAttrs, EventPlace, EventsAttrs, EventsPlace};
use crate::ctxt::Ctxt;
use crate::valid;

/// A `#[derive(Command)]` input.
pub struct Command<'a> {
    /// The whole input.
    pub original: &'a DeriveInput,
    /// The container attributes.
    pub attrs: CommandAttrs,
    /// The field marked `#[command(id)]`, if exactly one is.
    pub id: Option<IdField<'a>>,
}

/// The field that holds the aggregate id.
pub struct IdField<'a> {
    /// How to reach it from `self`.
    pub member: Member,
    /// Its type, for spans.
    pub ty: &'a Type,
}

impl<'a> Command<'a> {
    /// Reads the input, recording every problem in `cx`.
    pub fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = CommandAttrs::from_ast(cx, input);
        let id = match &input.data {
            Data::Struct(data) => id_field(cx, input, &data.fields, attrs.unclear),
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "#[derive(Command)] works on structs only: a command is a struct with a field marked #[command(id)]",
                );
                None
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "#[derive(Command)] works on structs only: a command is a struct with a field marked #[command(id)]",
                );
                None
            }
        };
        Command { original: input, attrs, id }
    }

    /// The command's name: `#[command(name = "...")]` or the struct's name.
    pub fn name(&self) -> LitStr {
        self.attrs.name.clone().unwrap_or_else(|| ident_lit(&self.original.ident))
    }
}

fn id_field<'a>(cx: &Ctxt, input: &'a DeriveInput, fields: &'a Fields, mut unclear: bool) -> Option<IdField<'a>> {
    if let Fields::Unit = fields {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(Command)] needs one field marked #[command(id)], and a unit struct has no fields",
        );
        return None;
    }
    let mut found: Option<IdField<'a>> = None;
    for (index, field) in fields.iter().enumerate() {
        let field_attrs = CommandFieldAttrs::from_ast(cx, &field.attrs);
        unclear |= field_attrs.unclear;
        let Some(marker) = field_attrs.id else {
            continue;
        };
        if found.is_some() {
            cx.error_spanned_by(marker, "only one field can be marked #[command(id)]");
            continue;
        }
        let member = match &field.ident {
            Some(ident) => Member::Named(ident.clone()),
            None => Member::from(index),
        };
        found = Some(IdField { member, ty: &field.ty });
    }
    // After an unclear attribute (reported), the id field may well be the one it meant to mark.
    if found.is_none() && !unclear {
        cx.error_spanned_by(
            &input.ident,
            format_args!(
                "`{}` needs one field marked #[command(id)]: the field that holds the aggregate id",
                input.ident.unraw(),
            ),
        );
    }
    found
}

/// A `#[derive(Event)]` input.
pub struct Event<'a> {
    /// The whole input.
    pub original: &'a DeriveInput,
    /// `#[event(crate = "...")]`.
    pub krate: Option<Path>,
    /// The event types, one per variant or one for a struct.
    pub data: EventData<'a>,
}

/// The event types of an enum or a struct.
pub enum EventData<'a> {
    /// One type per variant, in declaration order.
    Enum(Vec<Variant<'a>>),
    /// The struct's one type.
    Struct(TypeName),
    /// A union: reported, kept only for the fallback impl.
    Union,
}

/// One variant of an event enum.
pub struct Variant<'a> {
    /// The variant.
    pub ident: &'a Ident,
    /// Its type name and version.
    pub ty: TypeName,
}

/// A type name and schema version.
pub struct TypeName {
    /// The name; spanned at `#[event(name = "...")]` or, by default, at the Rust name.
    pub name: LitStr,
    /// The schema version, from 1.
    pub version: u32,
}

impl TypeName {
    fn new(attrs: EventAttrs, ident: &Ident) -> Self {
        TypeName { name: attrs.name.unwrap_or_else(|| ident_lit(ident)), version: attrs.version.unwrap_or(1) }
    }
}

impl<'a> Event<'a> {
    /// Reads the input, recording every problem in `cx`.
    pub fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        match &input.data {
            Data::Enum(data) => {
                let attrs = EventAttrs::from_ast(cx, &input.attrs, EventPlace::Enum);
                valid::serde_enum(cx, &input.attrs);
                if data.variants.is_empty() {
                    cx.error_spanned_by(
                        &input.ident,
                        "#[derive(Event)] needs at least one variant: an enum with no variants has no event types",
                    );
                }
                let variants: Vec<_> = data
                    .variants
                    .iter()
                    .map(|variant| {
                        let variant_attrs = EventAttrs::from_ast(cx, &variant.attrs, EventPlace::Variant);
                        valid::serde_variant(cx, &variant.attrs);
                        for field in &variant.fields {
                            attr::no_event_attrs(cx, &field.attrs);
                        }
                        Variant { ident: &variant.ident, ty: TypeName::new(variant_attrs, &variant.ident) }
                    })
                    .collect();
                valid::unique_names(cx, &variants);
                Event { original: input, krate: attrs.krate, data: EventData::Enum(variants) }
            }
            Data::Struct(data) => {
                let attrs = EventAttrs::from_ast(cx, &input.attrs, EventPlace::Struct);
                for field in &data.fields {
                    attr::no_event_attrs(cx, &field.attrs);
                }
                let krate = attrs.krate.clone();
                Event { original: input, krate, data: EventData::Struct(TypeName::new(attrs, &input.ident)) }
            }
            Data::Union(data) => {
                let attrs = EventAttrs::from_ast(cx, &input.attrs, EventPlace::Struct);
                cx.error_spanned_by(data.union_token, "#[derive(Event)] works on enums and structs, not unions");
                Event { original: input, krate: attrs.krate, data: EventData::Union }
            }
        }
    }
}

/// A `#[derive(EventSet)]` input.
pub struct EventSet<'a> {
    /// The whole input.
    pub original: &'a DeriveInput,
    /// `#[events(crate = "...")]`.
    pub krate: Option<Path>,
    /// The variants, one per aggregate, in declaration order; empty unless the input is an enum.
    pub variants: Vec<SetVariant<'a>>,
}

/// One variant of an event set: the aggregate named by `#[events(aggregate = ...)]`, and the
/// one field that holds that aggregate's event.
pub struct SetVariant<'a> {
    /// The variant.
    pub ident: &'a Ident,
    /// `#[events(aggregate = ...)]`, if given.
    pub aggregate: Option<Type>,
    /// How to reach its field, and the field's type, if it has exactly one.
    pub field: Option<(Member, &'a Type)>,
}

const EVENT_SET_SHAPE: &str =
    "each variant wraps one aggregate's event type, like `#[events(aggregate = Task)] Task(TaskEvent)`";

impl<'a> EventSet<'a> {
    /// Reads the input, recording every problem in `cx`.
    pub fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let place = EventsPlace::Enum;
        let attrs = EventsAttrs::from_ast(cx, &input.attrs, place);
        let data = match &input.data {
            Data::Enum(data) => data,
            Data::Struct(data) => {
                let msg = format!("#[derive(EventSet)] works on enums only: {EVENT_SET_SHAPE}");
                cx.error_spanned_by(data.struct_token, msg);
                return EventSet { original: input, krate: attrs.krate, variants: Vec::new() };
            }
            Data::Union(data) => {
                let msg = format!("#[derive(EventSet)] works on enums only: {EVENT_SET_SHAPE}");
                cx.error_spanned_by(data.union_token, msg);
                return EventSet { original: input, krate: attrs.krate, variants: Vec::new() };
            }
        };
        if !input.generics.params.is_empty() {
            cx.error_spanned_by(&input.generics, "#[derive(EventSet)] does not take generic parameters");
        }
        if data.variants.is_empty() {
            cx.error_spanned_by(
                &input.ident,
                "#[derive(EventSet)] needs at least one variant: an event set with no aggregates reads nothing",
            );
        }
        let variants: Vec<_> = data
            .variants
            .iter()
            .map(|variant| {
                let variant_attrs = EventsAttrs::from_ast(cx, &variant.attrs, EventsPlace::Variant);
                for field in &variant.fields {
                    attr::no_events_attrs(cx, &field.attrs);
                }
                let field = match variant.fields.iter().collect::<Vec<_>>().as_slice() {
                    [field] => {
                        let member = match &field.ident {
                            Some(ident) => Member::Named(ident.clone()),
                            None => Member::from(0),
                        };
                        Some((member, &field.ty))
                    }
                    _ => {
                        cx.error_spanned_by(
                            &variant.ident,
                            format_args!(
                                "variant `{}` must hold exactly one field, the aggregate's event: {EVENT_SET_SHAPE}",
                                variant.ident.unraw(),
                            ),
                        );
                        None
                    }
                };
                if variant_attrs.aggregate.is_none() && !variant_attrs.unclear {
                    cx.error_spanned_by(
                        &variant.ident,
                        format_args!(
                            "missing #[events(aggregate = ...)] on variant `{}`: name the aggregate whose events it wraps",
                            variant.ident.unraw(),
                        ),
                    );
                }
                SetVariant { ident: &variant.ident, aggregate: variant_attrs.aggregate, field }
            })
            .collect();
        valid::unique_aggregates(cx, &variants);
        EventSet { original: input, krate: attrs.krate, variants }
    }
}

/// A string literal of an identifier's name, without `r#`, spanned at the identifier.
fn ident_lit(ident: &Ident) -> LitStr {
    LitStr::new(&ident.unraw().to_string(), ident.span())
}
