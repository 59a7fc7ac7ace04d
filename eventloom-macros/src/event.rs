//! `#[derive(Event)]`.

use proc_macro2::{Literal, TokenStream};
use quote::quote;
use syn::{DeriveInput, Path, parse_quote};

use crate::ast::{Event, EventData, TypeName, Variant};
use crate::ctxt::Ctxt;
use crate::{dummy, fallback};

/// The `impl Event`, or the errors and a stub impl.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let event = Event::from_ast(&cx, input);
    match cx.check() {
        Ok(()) => expand(&event),
        Err(err) => fallback::event(&event, err),
    }
}

fn expand(event: &Event<'_>) -> TokenStream {
    let input = event.original;
    let krate = dummy::krate(event.krate.as_ref());
    let ident = &input.ident;

    // The trait's supertraits and the serde impls the generated methods call, required of the
    // type itself: generic events work without repeating them on each type parameter.
    let mut generics = input.generics.clone();
    generics.make_where_clause().predicates.push(parse_quote! {
        Self: ::core::marker::Send
            + ::core::marker::Sync
            + 'static
            + #krate::__private::serde::Serialize
            + #krate::__private::serde::de::DeserializeOwned
    });
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let body = match &event.data {
        EventData::Enum(variants) => expand_enum(&krate, variants),
        EventData::Struct(ty) => expand_struct(&krate, ty),
        // A union is an error, reported before expansion.
        EventData::Union => return TokenStream::new(),
    };

    dummy::wrap_in_const(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Event for #ident #ty_generics #where_clause {
            #body
        }
    })
}

fn event_type(krate: &Path, ty: &TypeName) -> TokenStream {
    let name = &ty.name;
    let version = Literal::u32_unsuffixed(ty.version);
    quote!(#krate::__private::EventType::new(#name, #version))
}

fn expand_enum(krate: &Path, variants: &[Variant<'_>]) -> TokenStream {
    let types = variants.iter().map(|variant| event_type(krate, &variant.ty));
    let type_arms = variants.iter().enumerate().map(|(index, variant)| {
        let ident = variant.ident;
        let index = Literal::usize_unsuffixed(index);
        quote!(Self::#ident { .. } => Self::TYPES[#index],)
    });
    // The position in declaration order is serde's variant index (no variant is skipped).
    let decode_arms = variants.iter().enumerate().map(|(index, variant)| {
        let name = &variant.ty.name;
        let index = Literal::usize_unsuffixed(index);
        quote!(#name => #index,)
    });

    quote! {
        const TYPES: &'static [#krate::__private::EventType] = &[#(#types),*];

        fn event_type(&self) -> #krate::__private::EventType {
            match self {
                #(#type_arms)*
            }
        }

        fn encode(&self) -> ::core::result::Result<::std::string::String, #krate::__private::serde_json::Error> {
            #krate::__private::encode_variant(self)
        }

        fn decode(event_type: &str, payload: &str) -> ::core::result::Result<Self, #krate::__private::DecodeError> {
            let index: u32 = match event_type {
                #(#decode_arms)*
                _ => return ::core::result::Result::Err(#krate::__private::DecodeError::UnknownType),
            };
            #krate::__private::decode_variant::<Self>(index, payload).map_err(#krate::__private::DecodeError::Payload)
        }
    }
}

fn expand_struct(krate: &Path, ty: &TypeName) -> TokenStream {
    let event_type = event_type(krate, ty);
    let name = &ty.name;

    quote! {
        const TYPES: &'static [#krate::__private::EventType] = &[#event_type];

        fn event_type(&self) -> #krate::__private::EventType {
            Self::TYPES[0]
        }

        fn encode(&self) -> ::core::result::Result<::std::string::String, #krate::__private::serde_json::Error> {
            #krate::__private::to_json(self)
        }

        fn decode(event_type: &str, payload: &str) -> ::core::result::Result<Self, #krate::__private::DecodeError> {
            if event_type != #name {
                return ::core::result::Result::Err(#krate::__private::DecodeError::UnknownType);
            }
            #krate::__private::serde_json::from_str(payload).map_err(#krate::__private::DecodeError::Payload)
        }
    }
}
