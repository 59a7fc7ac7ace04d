//! What every expansion shares: the path to `eventloom_core`, and the anonymous const that keeps
//! the generated impl's imports out of the user's namespace.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Path, parse_quote};

/// The path the generated code names `eventloom_core` by: the `crate = "..."` override, or `::eventloom_core`.
pub fn krate(custom: Option<&Path>) -> Path {
    match custom {
        Some(path) => path.clone(),
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
