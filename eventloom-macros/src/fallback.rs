//! After an error, the derives still emit a stub impl, so that code using the type as a
//! `Command`, an `Event` or an `EventSet` does not add errors of its own: the user sees the one that matters.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::{Command, Event, EventSet};
use crate::dummy;

/// The errors, and an `impl Command` whose method is never reached, if the aggregate is known.
pub fn command(command: &Command<'_>, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    let Some(aggregate) = &command.attrs.aggregate else {
        return error;
    };
    let input = command.original;
    let krate = dummy::krate(command.attrs.krate.as_ref());
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let name = command.name();
    let stub = dummy::wrap_in_const(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Command for #ident #ty_generics #where_clause {
            type Aggregate = #aggregate;
            const NAME: &'static str = #name;

            fn aggregate_id(&self) -> ::std::borrow::Cow<'_, str> {
                ::core::unreachable!()
            }
        }
    });
    quote!(#error #stub)
}

/// The errors, and an `impl Event` whose methods are never reached.
pub fn event(event: &Event<'_>, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    let input = event.original;
    let krate = dummy::krate(event.krate.as_ref());
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let stub = dummy::wrap_in_const(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Event for #ident #ty_generics #where_clause {
            const TYPES: &'static [#krate::__private::EventType] = &[];

            fn event_type(&self) -> #krate::__private::EventType {
                ::core::unreachable!()
            }

            fn encode(&self) -> ::core::result::Result<::std::string::String, #krate::__private::serde_json::Error> {
                ::core::unreachable!()
            }

            fn decode(_: &str, _: &str) -> ::core::result::Result<Self, #krate::__private::DecodeError> {
                ::core::unreachable!()
            }
        }
    });
    quote!(#error #stub)
}

/// The errors, and an `impl EventSet` whose methods are never reached (none for a generic
/// input, itself an error).
pub fn event_set(set: &EventSet<'_>, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    let input = set.original;
    if !input.generics.params.is_empty() {
        return error;
    }
    let krate = dummy::krate(set.krate.as_ref());
    let ident = &input.ident;
    let stub = dummy::wrap_in_const(quote! {
        #[automatically_derived]
        impl #krate::EventSet for #ident {
            type Event = Self;

            const CATEGORIES: &'static [&'static str] = &[];

            fn knows(_: &str, _: &str) -> bool {
                ::core::unreachable!()
            }

            fn decode(_: &#krate::__private::RecordedEvent, _: &#krate::__private::Upcasters) -> #krate::Result<Self> {
                ::core::unreachable!()
            }

            fn category(_: &Self) -> &'static str {
                ::core::unreachable!()
            }

            fn event_type(_: &Self) -> #krate::__private::EventType {
                ::core::unreachable!()
            }

            fn encode(_: &Self) -> ::core::result::Result<::std::string::String, #krate::__private::serde_json::Error> {
                ::core::unreachable!()
            }
        }
    });
    quote!(#error #stub)
}
