//! `#[invalidates(...)]`: tag invalidation after a function succeeds (`async fn`, or a plain `fn`
//! with `defer`).

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn, LitStr};

use crate::options::{self, Errors, RawOpt};
use crate::signature;

const VALID: &[&str] = &["defer", "cache", "crate"];

/// Expands `#[invalidates(args)] item`.
pub(crate) fn expand(args: TokenStream, item: &ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let mut tags: Vec<LitStr> = Vec::new();
    let mut named = Vec::new();
    match options::parse_args(args) {
        Ok(raw) => {
            for opt in raw {
                match opt {
                    RawOpt::Lit(lit) => {
                        if !named.is_empty() {
                            errors.at(
                                lit.span(),
                                "tags come first: move this tag before the `name = value` options",
                            );
                        }
                        tags.push(lit);
                    }
                    RawOpt::Named { name, value } => named.push((name, value)),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    let (mut krate, mut defer, mut cache): (Option<syn::Path>, Option<Expr>, Option<Expr>) =
        (None, None, None);
    for (name, _, value) in options::check_names(named, VALID, "invalidates", &mut errors) {
        match name.as_str() {
            "crate" => match options::crate_path(&value) {
                Ok(p) => krate = Some(p),
                Err(e) => errors.push(e),
            },
            "defer" => defer = Some(value),
            "cache" => cache = Some(value),
            _ => unreachable!("checked by check_names"),
        }
    }
    // Without `defer` the invalidation is awaited after the body, so the function must be
    // `async`; with `defer` nothing is awaited, and a plain `fn` (a database transaction's body,
    // which records the tags in the same transaction) works too.
    if item.sig.asyncness.is_none() && defer.is_none() {
        errors.at(
            item.sig.fn_token.span(),
            "`#[invalidates]` works on `async fn`, or on a plain `fn` with `defer = ...`: make \
             this function `async`, or collect the tags into a `PendingInvalidation` with `defer`",
        );
    }
    if let (Some(_), Some(c)) = (&defer, &cache) {
        errors.push(syn::Error::new_spanned(
            c,
            "`cache` has no effect with `defer`: the tags go to the `PendingInvalidation`, which \
             knows its cache; remove `cache = ...`",
        ));
    }
    if tags.is_empty() {
        errors.at(
            Span::call_site(),
            "`#[invalidates]` needs at least one tag: `#[invalidates(\"trig:{trig_id}\")]`",
        );
    }
    let all: Vec<Ident> = signature::args(item)
        .into_iter()
        .flat_map(|a| a.bindings)
        .collect();
    let krate = match &krate {
        Some(p) => quote!(#p),
        None => quote!(::cache_core),
    };
    let tags_v = Ident::new("__cache_core_tags", Span::mixed_site());
    let result_v = Ident::new("__cache_core_result", Span::mixed_site());
    // Tags that name `{result}` are formatted after the body, from the success value; the
    // others before it (the body may consume the arguments).
    let (mut before, mut after_body) = (Vec::new(), Vec::new());
    for t in &tags {
        let (expr, uses_result) =
            signature::result_template(t, &all, &result_v, &item.sig.ident, &krate, &mut errors);
        if uses_result {
            after_body.push(expr);
        } else {
            before.push(expr);
        }
    }
    errors.finish()?;

    let private = quote!(#krate::__private);
    let out_v = Ident::new("__cache_core_out", Span::mixed_site());
    let owner_v = Ident::new("__cache_core_owner", Span::mixed_site());
    let signature::Return {
        shape,
        probe,
        ty: ret,
        ..
    } = signature::shape(item, &krate);
    // The shape of the return type itself (also behind a type alias); a return type with
    // `impl Trait` cannot be probed, its shape comes from its name.
    let shape_v = Ident::new("__cache_core_shape", Span::mixed_site());
    let token = if signature::has_impl_trait(&item.sig.output) {
        quote!(#private::ShapeToken::<#shape>::new())
    } else {
        probe
    };
    let cache_select = match &cache {
        Some(expr) => quote! {
            let #owner_v = #expr;
            let #owner_v = #private::resolve_cache(&#owner_v);
        },
        None => quote!(let #owner_v = #private::default_cache();),
    };
    let after = match &defer {
        Some(expr) => quote!(#private::defer_tags(#expr, #tags_v);),
        None => quote!(#private::invalidate_after(#owner_v, #tags_v).await;),
    };
    let cache_select = if defer.is_some() {
        quote!()
    } else {
        cache_select
    };
    let mutability = if after_body.is_empty() {
        quote!()
    } else {
        quote!(mut)
    };
    let from_result = if after_body.is_empty() {
        quote!()
    } else {
        quote! {
            if let #private::Some(#result_v) = #private::success_value(&#out_v, &#shape_v) {
                #(#tags_v.push(#after_body);)*
            }
        }
    };
    let run_body = if item.sig.asyncness.is_some() {
        let block = &item.block;
        quote!(let #out_v = #private::typed::<#ret, _>(async #block).await;)
    } else {
        let block = &item.block;
        quote!(let #out_v = #private::typed_sync::<#ret, _>(|| #block);)
    };
    let ItemFn {
        attrs, vis, sig, ..
    } = item;
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let #mutability #tags_v: #private::Vec<#private::String> = #private::Vec::from([#(#before),*]);
            #cache_select
            #run_body
            let #shape_v = #token;
            if #private::succeeded(&#out_v, &#shape_v) {
                #from_result
                #after
            }
            #out_v
        }
    })
}
