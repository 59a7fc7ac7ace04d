//! Rules across attributes: unique type names, and serde settings the encoding cannot follow.

use std::collections::HashMap;

use crate::ast::Variant;
use crate::attr;
use crate::ctxt::Ctxt;
use crate::symbol::{CONTENT, SKIP, SKIP_DESERIALIZING, SKIP_SERIALIZING, TAG, UNTAGGED};

/// Reports a type name given to two variants, at the second.
pub fn unique_names(cx: &Ctxt, variants: &[Variant<'_>]) {
    let mut seen = HashMap::new();
    for variant in variants {
        let name = variant.ty.name.value();
        if let Some(first) = seen.get(&name) {
            cx.error_spanned_by(
                &variant.ty.name,
                format_args!("duplicate event type name `{name}`: variant `{first}` has it already"),
            );
        } else {
            seen.insert(name, variant.ident);
        }
    }
}

/// Reports `#[serde(tag)]`, `#[serde(content)]` and `#[serde(untagged)]` on an event enum: its
/// payloads are the variants' contents under serde's default external tagging.
pub fn serde_enum(cx: &Ctxt, attrs: &[syn::Attribute]) {
    let keys = attr::serde_keys(attrs);
    let tagging = keys.iter().find(|key| **key == TAG || **key == CONTENT || **key == UNTAGGED);
    if let Some(key) = tagging {
        let written = if *key == UNTAGGED { "untagged".to_owned() } else { format!("{} = \"...\"", quote::quote!(#key)) };
        cx.error_spanned_by(
            key,
            format_args!(
                "#[serde({written})] is not supported on an event enum: the payload encoding needs serde's default external tagging"
            ),
        );
    }
}

/// Reports `#[serde(skip)]` and its kin on a variant, which shift serde's variant indexes that
/// decoding relies on, and `#[serde(untagged)]`, which drops the tag the encoding strips.
pub fn serde_variant(cx: &Ctxt, attrs: &[syn::Attribute]) {
    for key in attr::serde_keys(attrs) {
        if key == SKIP || key == SKIP_SERIALIZING || key == SKIP_DESERIALIZING {
            cx.error_spanned_by(
                &key,
                format_args!(
                    "#[serde({})] is not supported on an event variant: skipping a variant shifts serde's variant indexes, which decoding relies on",
                    quote::quote!(#key),
                ),
            );
        } else if key == UNTAGGED {
            cx.error_spanned_by(
                &key,
                "#[serde(untagged)] is not supported on an event variant: the payload encoding needs serde's default external tagging",
            );
        }
    }
}
