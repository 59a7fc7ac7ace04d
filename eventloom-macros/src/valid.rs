//! Rules across attributes: unique type names, and serde settings the encoding cannot follow.

use std::collections::HashMap;

use quote::quote;
use syn::Attribute;

use crate::ast::{SetVariant, Variant};
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

/// Reports an aggregate named by two variants of an event set, and an event type wrapped by two
/// (their `From` impls would clash), at the second.
pub fn unique_aggregates(cx: &Ctxt, variants: &[SetVariant<'_>]) {
    let mut aggregates = HashMap::new();
    let mut types = HashMap::new();
    for variant in variants {
        if let Some(aggregate) = &variant.aggregate {
            let key = quote!(#aggregate).to_string();
            match aggregates.get(&key) {
                Some(first) => cx.error_spanned_by(
                    aggregate,
                    format_args!(
                        "aggregate `{}` is read by variant `{first}` already: name each aggregate once",
                        key.replace(' ', "")
                    ),
                ),
                None => {
                    aggregates.insert(key, variant.ident);
                }
            }
        }
        if let Some((_, ty)) = &variant.field {
            let key = quote!(#ty).to_string();
            match types.get(&key) {
                Some(first) => cx.error_spanned_by(
                    ty,
                    format_args!(
                        "variant `{first}` wraps `{}` already: each variant wraps its own aggregate's event type",
                        key.replace(' ', "")
                    ),
                ),
                None => {
                    types.insert(key, variant.ident);
                }
            }
        }
    }
}

const EXTERNAL_TAGGING: &str = "the payload encoding needs serde's default external tagging";

/// Reports `#[serde(tag)]`, `#[serde(content)]` and `#[serde(untagged)]` on an event enum: its
/// payloads are the variants' contents under serde's default external tagging.
pub fn serde_enum(cx: &Ctxt, attrs: &[Attribute]) {
    let keys = attr::serde_keys(attrs);
    let Some(key) = keys.iter().find(|key| **key == TAG || **key == CONTENT || **key == UNTAGGED) else {
        return;
    };
    let written = if *key == UNTAGGED { quote!(#key).to_string() } else { format!("{} = \"...\"", quote!(#key)) };
    cx.error_spanned_by(key, format!("#[serde({written})] is not supported on an event enum: {EXTERNAL_TAGGING}"));
}

/// Reports `#[serde(skip)]` and its kin on a variant, which shift serde's variant indexes that
/// decoding relies on, and `#[serde(untagged)]`, which drops the tag the encoding strips.
pub fn serde_variant(cx: &Ctxt, attrs: &[Attribute]) {
    for key in attr::serde_keys(attrs) {
        if key == SKIP || key == SKIP_SERIALIZING || key == SKIP_DESERIALIZING {
            let msg = format!(
                "#[serde({})] is not supported on an event variant: skipping a variant shifts serde's variant \
                 indexes, which decoding relies on",
                quote!(#key),
            );
            cx.error_spanned_by(&key, msg);
        } else if key == UNTAGGED {
            let msg = format!("#[serde(untagged)] is not supported on an event variant: {EXTERNAL_TAGGING}");
            cx.error_spanned_by(&key, msg);
        }
    }
}
