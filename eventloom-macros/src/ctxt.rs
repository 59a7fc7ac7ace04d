//! Collects every error found in one derive input, so the user sees them all at once.

use std::cell::RefCell;
use std::fmt::Display;

use quote::ToTokens;

/// The errors found so far. Parsing goes on after an error; [`Ctxt::check`] ends it.
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Option<syn::Error>>,
}

impl Ctxt {
    /// No errors yet.
    pub fn new() -> Self {
        Ctxt::default()
    }

    /// Records an error that points at `obj`.
    pub fn error_spanned_by<A: ToTokens, T: Display>(&self, obj: A, msg: T) {
        self.syn_error(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// Records an error as it is.
    pub fn syn_error(&self, err: syn::Error) {
        let mut errors = self.errors.borrow_mut();
        match errors.as_mut() {
            Some(first) => first.combine(err),
            None => *errors = Some(err),
        }
    }

    /// All the errors recorded, combined into one, or `Ok` if there were none.
    pub fn check(self) -> syn::Result<()> {
        match self.errors.into_inner() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}
