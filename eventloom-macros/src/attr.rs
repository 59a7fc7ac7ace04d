//! One struct per attribute: what `#[command(...)]`, `#[event(...)]` and `#[events(...)]` say, parsed with
//! `parse_nested_meta`. Every problem is recorded in the [`Ctxt`] and parsing goes on.

use proc_macro2::TokenTree;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, DeriveInput, Expr, ExprLit, Lit, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;
use crate::symbol::{AGGREGATE, COMMAND, CRATE, EVENT, EVENTS, ID, NAME, SERDE, Symbol, VERSION};

/// A key that may be given once.
struct Attr<'c, T> {
    cx: &'c Ctxt,
    attr: Symbol,
    key: Symbol,
    value: Option<T>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, attr: Symbol, key: Symbol) -> Self {
        Attr { cx, attr, key, value: None }
    }

    /// Keeps `value`, or reports a duplicate at `obj` if the key was already given.
    fn set<A: ToTokens>(&mut self, obj: A, value: T) {
        if self.value.is_some() {
            let msg = format!("duplicate {} attribute `{}`", self.attr, self.key);
            self.cx.error_spanned_by(obj, msg);
        } else {
            self.value = Some(value);
        }
    }

    fn get(self) -> Option<T> {
        self.value
    }
}

/// `#[command(...)]` on the struct.
pub struct CommandAttrs {
    /// `aggregate = Path`.
    pub aggregate: Option<Type>,
    /// `name = "..."`.
    pub name: Option<LitStr>,
    /// `crate = "..."`.
    pub krate: Option<Path>,
    /// Whether an attribute was malformed, or had an unknown or misplaced key. Reported; a
    /// missing `#[command(id)]` field is then not reported on top of it.
    pub unclear: bool,
}

impl CommandAttrs {
    /// Reads every `#[command(...)]` among the struct's attributes, and reports a missing
    /// `aggregate`.
    pub fn from_ast(cx: &Ctxt, input: &DeriveInput) -> Self {
        let mut aggregate = Attr::none(cx, COMMAND, AGGREGATE);
        let mut name = Attr::none(cx, COMMAND, NAME);
        let mut krate = Attr::none(cx, COMMAND, CRATE);
        let mut unclear = false;

        for attr in input.attrs.iter().filter(|attr| attr.path() == COMMAND) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path == AGGREGATE {
                    let value = meta.value()?;
                    if value.peek(LitStr) {
                        let lit: LitStr = value.parse()?;
                        cx.error_spanned_by(
                            &lit,
                            "`aggregate` takes the aggregate's type, not a string: write aggregate = MyAggregate",
                        );
                        // The type in the string, if any, still serves the fallback impl.
                        aggregate.set(&meta.path, lit.parse::<Type>().ok());
                    } else {
                        let ty: Type = value.parse()?;
                        aggregate.set(&meta.path, Some(ty));
                    }
                } else if meta.path == NAME {
                    let lit = parse_name(cx, &meta)?;
                    name.set(&meta.path, lit);
                } else if meta.path == CRATE {
                    let path = parse_crate(cx, &meta)?;
                    krate.set(&meta.path, path);
                } else if meta.path == ID {
                    skip_value(&meta)?;
                    unclear = true;
                    cx.syn_error(
                        meta.error("#[command(id)] goes on the field that holds the aggregate id, not on the struct"),
                    );
                } else {
                    unclear = true;
                    cx.syn_error(unknown(&meta, COMMAND));
                    skip_value(&meta)?;
                }
                Ok(())
            });
            if let Err(err) = parsed {
                unclear = true;
                cx.syn_error(err);
            }
        }

        let aggregate = aggregate.get();
        if aggregate.is_none() && !unclear {
            cx.error_spanned_by(
                &input.ident,
                "missing #[command(aggregate = ...)]: name the aggregate this command targets",
            );
        }

        CommandAttrs {
            aggregate: aggregate.flatten(),
            name: name.get().flatten(),
            krate: krate.get().flatten(),
            unclear,
        }
    }
}

/// `#[command(...)]` on a field.
pub struct CommandFieldAttrs {
    /// The `id` key, for spans, if the field is marked `#[command(id)]`.
    pub id: Option<Path>,
    /// Whether an attribute was malformed, or had an unknown or misplaced key (reported).
    pub unclear: bool,
}

impl CommandFieldAttrs {
    /// Reads every `#[command(...)]` among a field's attributes.
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut id = Attr::none(cx, COMMAND, ID);
        let mut unclear = false;
        for attr in attrs.iter().filter(|attr| attr.path() == COMMAND) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path == ID {
                    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
                        skip_value(&meta)?;
                        cx.syn_error(meta.error("`id` takes no value: write #[command(id)]"));
                    }
                    id.set(&meta.path, meta.path.clone());
                } else if meta.path == AGGREGATE || meta.path == NAME || meta.path == CRATE {
                    unclear = true;
                    cx.syn_error(meta.error(format_args!(
                        "#[command({})] goes on the struct, not on a field",
                        path_to_string(&meta.path),
                    )));
                    skip_value(&meta)?;
                } else {
                    unclear = true;
                    cx.syn_error(unknown(&meta, COMMAND));
                    skip_value(&meta)?;
                }
                Ok(())
            });
            if let Err(err) = parsed {
                unclear = true;
                cx.syn_error(err);
            }
        }
        CommandFieldAttrs { id: id.get(), unclear }
    }
}

/// Where an `#[event(...)]` attribute sits; decides which keys it takes.
#[derive(Copy, Clone, PartialEq, Eq)]
pub enum EventPlace {
    /// On a struct: `name`, `version` and `crate`.
    Struct,
    /// On an enum: `crate` only.
    Enum,
    /// On an enum's variant: `name` and `version`.
    Variant,
}

/// `#[event(...)]` on a struct, an enum or a variant.
pub struct EventAttrs {
    /// `name = "..."`.
    pub name: Option<LitStr>,
    /// `version = N`.
    pub version: Option<u32>,
    /// `crate = "..."`.
    pub krate: Option<Path>,
}

impl EventAttrs {
    /// Reads every `#[event(...)]` among `attrs`, which sit at `place`.
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute], place: EventPlace) -> Self {
        let mut name = Attr::none(cx, EVENT, NAME);
        let mut version = Attr::none(cx, EVENT, VERSION);
        let mut krate = Attr::none(cx, EVENT, CRATE);

        for attr in attrs.iter().filter(|attr| attr.path() == EVENT) {
            let parsed = attr.parse_nested_meta(|meta| {
                if (meta.path == NAME || meta.path == VERSION) && place == EventPlace::Enum {
                    cx.syn_error(meta.error(format_args!(
                        "#[event({})] goes on each variant of an enum, not on the enum",
                        path_to_string(&meta.path),
                    )));
                    skip_value(&meta)?;
                } else if meta.path == NAME {
                    let lit = parse_name(cx, &meta)?;
                    name.set(&meta.path, lit);
                } else if meta.path == VERSION {
                    let number = parse_version(cx, &meta)?;
                    version.set(&meta.path, number);
                } else if meta.path == CRATE && place == EventPlace::Variant {
                    cx.syn_error(meta.error("#[event(crate = \"...\")] goes on the enum, not on a variant"));
                    skip_value(&meta)?;
                } else if meta.path == CRATE {
                    let path = parse_crate(cx, &meta)?;
                    krate.set(&meta.path, path);
                } else {
                    cx.syn_error(unknown(&meta, EVENT));
                    skip_value(&meta)?;
                }
                Ok(())
            });
            if let Err(err) = parsed {
                cx.syn_error(err);
            }
        }

        EventAttrs { name: name.get().flatten(), version: version.get().flatten(), krate: krate.get().flatten() }
    }
}

/// Where an `#[events(...)]` attribute sits; decides which keys it takes.
#[derive(Copy, Clone, PartialEq, Eq)]
pub enum EventsPlace {
    /// On the enum: `crate` only.
    Enum,
    /// On a variant: `aggregate` only.
    Variant,
}

/// `#[events(...)]` on an event set enum or one of its variants.
pub struct EventsAttrs {
    /// `aggregate = Path`.
    pub aggregate: Option<Type>,
    /// `crate = "..."`.
    pub krate: Option<Path>,
    /// Whether an attribute was malformed, or had an unknown or misplaced key. Reported; a
    /// missing `aggregate` is then not reported on top of it.
    pub unclear: bool,
}

impl EventsAttrs {
    /// Reads every `#[events(...)]` among `attrs`, which sit at `place`.
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute], place: EventsPlace) -> Self {
        let mut aggregate = Attr::none(cx, EVENTS, AGGREGATE);
        let mut krate = Attr::none(cx, EVENTS, CRATE);
        let mut unclear = false;
        for attr in attrs.iter().filter(|attr| attr.path() == EVENTS) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path == AGGREGATE && place == EventsPlace::Enum {
                    unclear = true;
                    cx.syn_error(meta.error(
                        "#[events(aggregate = ...)] goes on each variant, naming the aggregate whose events it wraps",
                    ));
                    skip_value(&meta)?;
                } else if meta.path == AGGREGATE {
                    let value = meta.value()?;
                    if value.peek(LitStr) {
                        let lit: LitStr = value.parse()?;
                        cx.error_spanned_by(
                            &lit,
                            "`aggregate` takes the aggregate's type, not a string: write aggregate = MyAggregate",
                        );
                        aggregate.set(&meta.path, lit.parse::<Type>().ok());
                    } else {
                        let ty: Type = value.parse()?;
                        aggregate.set(&meta.path, Some(ty));
                    }
                } else if meta.path == CRATE && place == EventsPlace::Variant {
                    unclear = true;
                    cx.syn_error(meta.error("#[events(crate = \"...\")] goes on the enum, not on a variant"));
                    skip_value(&meta)?;
                } else if meta.path == CRATE {
                    let path = parse_crate(cx, &meta)?;
                    krate.set(&meta.path, path);
                } else {
                    unclear = true;
                    cx.syn_error(unknown(&meta, EVENTS));
                    skip_value(&meta)?;
                }
                Ok(())
            });
            if let Err(err) = parsed {
                unclear = true;
                cx.syn_error(err);
            }
        }
        EventsAttrs { aggregate: aggregate.get().flatten(), krate: krate.get().flatten(), unclear }
    }
}

/// Reports every `#[events(...)]` among a field's attributes: none belongs there.
pub fn no_events_attrs(cx: &Ctxt, attrs: &[Attribute]) {
    for attr in attrs.iter().filter(|attr| attr.path() == EVENTS) {
        cx.error_spanned_by(attr, "#[events(...)] goes on the enum or its variants, not on a field");
    }
}

/// Reports every `#[event(...)]` among a field's attributes: none belongs there.
pub fn no_event_attrs(cx: &Ctxt, attrs: &[Attribute]) {
    for attr in attrs.iter().filter(|attr| attr.path() == EVENT) {
        cx.error_spanned_by(attr, "#[event(...)] goes on the struct, the enum or its variants, not on a field");
    }
}

/// The keys of every `#[serde(...)]` among `attrs`, as far as they parse (serde reports the rest).
pub fn serde_keys(attrs: &[Attribute]) -> Vec<Path> {
    let mut keys = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path() == SERDE) {
        // A malformed attribute is serde's to report; the keys read before it still count.
        let _ = attr.parse_nested_meta(|meta| {
            keys.push(meta.path.clone());
            skip_value(&meta)
        });
    }
    keys
}

/// `name = "..."`: a non-empty string literal. `None` once the problem is reported.
fn parse_name(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<LitStr>> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => {
            if lit.value().is_empty() {
                cx.error_spanned_by(lit, "`name` cannot be empty");
                Ok(None)
            } else {
                Ok(Some(lit))
            }
        }
        other => {
            cx.error_spanned_by(other, "`name` must be a string literal, like name = \"Deposited\"");
            Ok(None)
        }
    }
}

/// `version = N`: an integer literal from 1 that fits a `u32`. `None` once the problem is reported.
fn parse_version(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<u32>> {
    let expr: Expr = meta.value()?.parse()?;
    let Expr::Lit(ExprLit { lit: Lit::Int(lit), .. }) = expr else {
        cx.error_spanned_by(expr, "`version` must be an integer literal, like version = 2");
        return Ok(None);
    };
    if !matches!(lit.suffix(), "" | "u32") {
        cx.error_spanned_by(lit, "`version` is a u32: write it without a suffix, like version = 2");
        return Ok(None);
    }
    match lit.base10_parse::<u32>() {
        Ok(0) => {
            cx.error_spanned_by(lit, "`version` starts at 1: schema versions count from 1");
            Ok(None)
        }
        Ok(number) => Ok(Some(number)),
        Err(_) => {
            cx.error_spanned_by(lit, "`version` must fit in a u32");
            Ok(None)
        }
    }
}

/// `crate = "path"`: the path the generated code names the `eventloom_core` crate by.
fn parse_crate(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Path>> {
    let expr: Expr = meta.value()?.parse()?;
    let Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) = expr else {
        cx.error_spanned_by(expr, "`crate` must be a string, like crate = \"::eventloom_core\"");
        return Ok(None);
    };
    match lit.parse_with(Path::parse_mod_style) {
        Ok(path) => Ok(Some(path)),
        Err(_) => {
            cx.error_spanned_by(lit, "`crate` must be a path, like crate = \"::eventloom_core\"");
            Ok(None)
        }
    }
}

fn unknown(meta: &ParseNestedMeta<'_>, attr: Symbol) -> syn::Error {
    let msg = format!("unknown {} attribute `{}`", attr, path_to_string(&meta.path));
    syn::Error::new_spanned(&meta.path, msg)
}

/// Consumes whatever follows a key up to the next comma: `= value` or `(...)`.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let value = meta.value()?;
        while !value.is_empty() && !value.peek(Token![,]) {
            value.parse::<TokenTree>()?;
        }
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn path_to_string(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}
