//! What every expansion shares: the path to `eventloom_core`, and the anonymous const that keeps
//! the generated impl's imports out of the user's namespace.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Path, parse_quote};

thread_local! {
    /// Whether the derive running now was invoked through the `eventloom` facade's re-export.
    static VIA_FACADE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `derive` as invoked through the `eventloom` facade: the generated code names
/// `::eventloom` unless the input says otherwise, so that a crate depending on the facade alone
/// compiles its derives.
pub fn via_facade<T>(derive: impl FnOnce() -> T) -> T {
    VIA_FACADE.with(|via| via.set(true));
    let expanded = derive();
    VIA_FACADE.with(|via| via.set(false));
    expanded
}

/// The path the generated code names `eventloom_core` by: the `crate = "..."` override, else
/// `::eventloom` through the facade, else `::eventloom_core`.
pub fn krate(custom: Option<&Path>) -> Path {
    match custom {
        Some(path) => path.clone(),
        None if VIA_FACADE.with(std::cell::Cell::get) => parse_quote!(::eventloom),
        None => parse_quote!(::eventloom_core),
    }
}

/// Wraps an impl in `const _: () = { ... };`.
pub fn wrap_in_const(code: TokenStream) -> TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(
            non_upper_case_globals,
            unused_attributes,
            unused_qualifications,
            clippy::absolute_paths,
        )]
        const _: () = {
            #code
        };
    }
}
