//! `#[derive(EventSet)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Member, Type};

use crate::ast::EventSet;
use crate::ctxt::Ctxt;
use crate::{dummy, fallback};

/// The `impl EventSet` and one `From` per variant, or the errors and a stub impl.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let set = EventSet::from_ast(&cx, input);
    if let Err(err) = cx.check() {
        return fallback::event_set(&set, err);
    }
    let mut variants = Vec::with_capacity(set.variants.len());
    for variant in &set.variants {
        match (&variant.aggregate, &variant.field) {
            (Some(aggregate), Some((member, ty))) => variants.push((variant.ident, aggregate, member, *ty)),
            // Unreachable: a variant without either is an error. Still, no panic.
            _ => {
                let err = syn::Error::new_spanned(variant.ident, "#[derive(EventSet)] could not read this variant");
                return fallback::event_set(&set, err);
            }
        }
    }
    expand(&set, &variants)
}

fn expand(set: &EventSet<'_>, variants: &[(&syn::Ident, &Type, &Member, &Type)]) -> TokenStream {
    let krate = dummy::krate(set.krate.as_ref());
    let ident = &set.original.ident;
    let type_of = |aggregate: &Type| quote!(<#aggregate as #krate::Aggregate>::TYPE);

    let categories = variants.iter().map(|(_, aggregate, _, _)| type_of(aggregate));
    let knows = variants.iter().map(|(_, aggregate, _, _)| {
        let category = type_of(aggregate);
        quote! {
            if category == #category {
                return <<#aggregate as #krate::Aggregate>::Event as #krate::Event>::knows(event_type);
            }
        }
    });
    // The field's type must be the aggregate's event: a mismatch is reported at the field.
    let decodes = variants.iter().map(|(variant, aggregate, member, ty)| {
        let category = type_of(aggregate);
        let decoded = quote_spanned! {ty.span()=>
            let event: #ty = upcasters.decode_event::<<#aggregate as #krate::Aggregate>::Event>(raw)?;
        };
        quote! {
            if category == #category {
                #decoded
                return ::core::result::Result::Ok(Self::#variant { #member: event });
            }
        }
    });
    let category_arms = variants.iter().map(|(variant, aggregate, _, _)| {
        let category = type_of(aggregate);
        quote!(Self::#variant { .. } => #category,)
    });
    let type_arms = variants
        .iter()
        .map(|(variant, _, member, _)| quote!(Self::#variant { #member: event } => #krate::Event::event_type(event),));
    let encode_arms = variants
        .iter()
        .map(|(variant, _, member, _)| quote!(Self::#variant { #member: event } => #krate::Event::encode(event),));
    let froms = variants.iter().map(|(variant, _, member, ty)| {
        quote! {
            #[automatically_derived]
            impl ::core::convert::From<#ty> for #ident {
                fn from(event: #ty) -> Self {
                    Self::#variant { #member: event }
                }
            }
        }
    });

    dummy::wrap_in_const(quote! {
        #[automatically_derived]
        impl #krate::EventSet for #ident {
            type Event = Self;

            const CATEGORIES: &'static [&'static str] = &[#(#categories),*];

            fn knows(category: &str, event_type: &str) -> bool {
                #(#knows)*
                false
            }

            fn decode(
                raw: &#krate::__private::RecordedEvent,
                upcasters: &#krate::__private::Upcasters,
            ) -> #krate::Result<Self> {
                let category = raw.stream.category();
                #(#decodes)*
                ::core::result::Result::Err(#krate::__private::unknown_category(raw))
            }

            fn category(event: &Self) -> &'static str {
                match event {
                    #(#category_arms)*
                }
            }

            fn event_type(event: &Self) -> #krate::__private::EventType {
                match event {
                    #(#type_arms)*
                }
            }

            fn encode(event: &Self) -> ::core::result::Result<::std::string::String, #krate::__private::serde_json::Error> {
                match event {
                    #(#encode_arms)*
                }
            }
        }

        #(#froms)*
    })
}
