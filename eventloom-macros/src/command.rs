//! `#[derive(Command)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Path, Type};

use crate::ast::{Command, IdField};
use crate::ctxt::Ctxt;
use crate::{dummy, fallback};

/// The `impl Command`, or the errors and a stub impl.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let command = Command::from_ast(&cx, input);
    let checked = cx.check();
    match (checked, &command.id, &command.attrs.aggregate) {
        (Ok(()), Some(id), Some(aggregate)) => expand(&command, id, aggregate),
        (Err(err), _, _) => fallback::command(&command, err),
        // Unreachable: a missing id or aggregate is an error. Still, no panic.
        (Ok(()), _, _) => fallback::command(
            &command,
            syn::Error::new_spanned(&input.ident, "#[derive(Command)] could not read this struct"),
        ),
    }
}

fn expand(command: &Command<'_>, id: &IdField<'_>, aggregate: &Type) -> TokenStream {
    let input = command.original;
    let krate = dummy::krate(command.attrs.krate.as_ref());
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let name = command.name();
    let aggregate_id = aggregate_id(&krate, id);

    dummy::wrap_in_const(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Command for #ident #ty_generics #where_clause {
            type Aggregate = #aggregate;
            const NAME: &'static str = #name;

            fn aggregate_id(&self) -> ::std::borrow::Cow<'_, str> {
                #aggregate_id
            }
        }
    })
}

/// Borrows an id that is `AsRef<str>` and formats any other with `Display`: `ViaAsRef` is
/// implemented for `IdRef<T>` and `ViaDisplay` for `&IdRef<T>`, so method lookup on
/// `&IdRef<T>` tries `ViaAsRef` first (autoref specialization). Spanned at the field's type,
/// so an id type with neither impl is reported there.
fn aggregate_id(krate: &Path, id: &IdField<'_>) -> TokenStream {
    let member = &id.member;
    let call = quote_spanned! {id.ty.span()=>
        (&#krate::__private::IdRef(&self.#member)).stream_id_cow()
    };
    quote! {
        #[allow(unused_imports)]
        use #krate::__private::{ViaAsRef as _, ViaDisplay as _};
        #call
    }
}
