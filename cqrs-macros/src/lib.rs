//! Derive macros for `cqrs-core` (placeholder while the real ones are written).
use proc_macro::TokenStream;

/// Derives `cqrs_core::Command`.
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}

/// Derives `cqrs_core::Event`.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
