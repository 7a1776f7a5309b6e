//! `#[cached(...)]`: read-through caching of an `async fn`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn, LitStr};

use crate::options::{self, Errors, RawOpt};
use crate::signature::{self, Arg};

const VALID: &[&str] = &[
    "resource",
    "ttl",
    "key",
    "tags",
    "user",
    "version",
    "unless",
    "stale_while_revalidate",
    "stale_if_error",
    "lease",
    "cache",
    "skip",
    "crate",
];

/// How the key is built.
enum KeySpec {
    /// `key = "{a}:{b}"`: one id segment.
    Template(LitStr),
    /// `key = [a, b]`: these arguments, as hashed parameters.
    List(Vec<Ident>),
}

/// The parsed options, with the user's tokens kept for spans.
#[derive(Default)]
struct Options {
    krate: Option<syn::Path>,
    resource: Option<LitStr>,
    ttl: Option<u64>,
    key: Option<KeySpec>,
    tags: Vec<LitStr>,
    user: Option<Expr>,
    version: Option<u32>,
    unless: Option<Expr>,
    stale_while_revalidate: Option<u64>,
    stale_if_error: Option<u64>,
    lease: Option<bool>,
    cache: Option<Expr>,
    skip: Vec<Ident>,
}

fn parse_options(args: TokenStream, errors: &mut Errors) -> Options {
    let raw = match options::parse_args(args) {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(e);
            return Options::default();
        }
    };
    let mut named = Vec::new();
    for opt in raw {
        match opt {
            RawOpt::Named { name, value } => named.push((name, value)),
            RawOpt::Lit(lit) => errors.at(
                lit.span(),
                "`#[cached]` takes `name = value` options; for a resource name write `resource = \"...\"`",
            ),
        }
    }
    let mut o = Options::default();
    for (name, _ident, value) in options::check_names(named, VALID, "cached", errors) {
        let r: syn::Result<()> = (|| {
            match name.as_str() {
                "crate" => o.krate = Some(options::crate_path(&value)?),
                "resource" => o.resource = Some(options::lit_str("resource", &value, "\"trig\"")?),
                "ttl" => o.ttl = Some(options::duration("ttl", &value)?),
                "stale_while_revalidate" => {
                    o.stale_while_revalidate = Some(options::duration(&name, &value)?);
                }
                "stale_if_error" => o.stale_if_error = Some(options::duration(&name, &value)?),
                "lease" => o.lease = Some(options::bool_lit("lease", &value)?),
                "version" => o.version = Some(options::u32_lit("version", &value)?),
                "user" => o.user = Some(value),
                "unless" => o.unless = Some(value),
                "cache" => o.cache = Some(value),
                "key" => {
                    o.key = Some(match &value {
                        Expr::Array(_) => KeySpec::List(
                            options::array("key", &value, "[trig_id, page]")?
                                .into_iter()
                                .map(|e| options::ident("key", e))
                                .collect::<syn::Result<_>>()?,
                        ),
                        _ => KeySpec::Template(options::lit_str(
                            "key",
                            &value,
                            "\"{trig_id}:{page}\"` or `key = [trig_id, page]",
                        )?),
                    });
                }
                "tags" => {
                    for e in options::array("tags", &value, "[\"trig:{trig_id}\"]")? {
                        o.tags
                            .push(options::lit_str("tags", e, "[\"trig:{trig_id}\"]")?);
                    }
                }
                "skip" => {
                    for e in options::array("skip", &value, "[db]")? {
                        o.skip.push(options::ident("skip", e)?);
                    }
                }
                _ => unreachable!("checked by check_names"),
            }
            Ok(())
        })();
        if let Err(e) = r {
            errors.push(e);
        }
    }
    o
}

/// Expands `#[cached(args)] item`.
pub(crate) fn expand(args: TokenStream, item: &ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    if item.sig.asyncness.is_none() {
        errors.at(
            item.sig.fn_token.span(),
            "`#[cached]` works on `async fn` only: make this function `async`",
        );
    }
    let o = parse_options(args, &mut errors);
    let args = signature::args(item);
    let all: Vec<Ident> = args.iter().flat_map(|a| a.bindings.clone()).collect();
    let derefs: Vec<(Ident, usize)> = args
        .iter()
        .filter(|a| a.derefs > 0)
        .flat_map(|a| a.bindings.iter().map(|b| (b.clone(), a.derefs)))
        .collect();
    let fn_name = &item.sig.ident;
    let http_return = match &item.sig.output {
        syn::ReturnType::Type(_, ty) => signature::http_return(ty),
        syn::ReturnType::Default => None,
    };
    if let (syn::ReturnType::Type(_, ty), None) = (&item.sig.output, http_return) {
        if let Some(bad) = signature::uncacheable(ty) {
            let shown = quote!(#bad)
                .to_string()
                .replace(" :: ", "::")
                .replace(":: ", "::")
                .replace(" < ", "<")
                .replace(" >", ">")
                .replace(" ,", ",")
                .replace("& ", "&")
                .replace("( ", "(")
                .replace(" )", ")");
            let message = if signature::http_return(bad).is_some() {
                format!(
                    "`#[cached]` caches a whole response such as `{shown}` only as the return \
                     type itself, not inside a `Result` or an `Option`. Return the response \
                     itself, with the error case turned into its own response (`Response` or \
                     `impl IntoResponse` on Axum, `HttpResponse` or `impl Responder` on Actix; \
                     only a storable `200` is stored, an error status never is), or return \
                     `Result<Json<T>, E>` (`T` is cached, `Err` is not)"
                )
            } else {
                format!(
                    "`#[cached]` cannot cache `{shown}`: the value is stored in the cache, so it \
                     must be a concrete `Serialize + DeserializeOwned` type. Return `Json<T>` \
                     (cached as `T`, re-wrapped on a hit), a serializable type, or a \
                     `Result`/`Option` of those; or return a whole response as the return type \
                     itself (not inside a `Result`/`Option`), which is cached whole: `Response`, \
                     `impl IntoResponse` or a tuple such as `(StatusCode, Json<T>)` on Axum, \
                     `HttpResponse`, `impl Responder` or `(R, StatusCode)` on Actix"
                )
            };
            errors.push(syn::Error::new_spanned(bad, message));
        }
    }
    if let (Some(_), Some(u)) = (http_return, &o.unless) {
        errors.push(syn::Error::new_spanned(
            u,
            "`unless` does not apply to a handler returning a whole response (`Response`, \
             `impl IntoResponse` or a response tuple on Axum, `HttpResponse`, `impl Responder` or \
             `(R, StatusCode)` on Actix): only 200 responses without `Set-Cookie`, \
             `Cache-Control: no-store/private/no-cache` or `Vary: *` and with a body of at most \
             1 MiB are stored, any other response is returned unstored; remove `unless`",
        ));
    }
    let check = |id: &Ident, option: &str, errors: &mut Errors| {
        if !all.contains(id) {
            errors.at(
                id.span(),
                format!(
                    "`{id}` in `{option}` is not a parameter of `{fn_name}`: list the names the \
                     function's arguments bind ({})",
                    list(&all)
                ),
            );
        }
    };
    for id in &o.skip {
        check(id, "skip", &mut errors);
    }
    if let Some(KeySpec::List(ids)) = &o.key {
        for id in ids {
            check(id, "key", &mut errors);
        }
    }

    let krate = match &o.krate {
        Some(p) => quote!(#p),
        None => quote!(::cache_core),
    };
    let private = quote!(#krate::__private);
    let cache_v = Ident::new("__cache_core_cache", Span::mixed_site());
    let owner_v = Ident::new("__cache_core_owner", Span::mixed_site());
    let draft_v = Ident::new("__cache_core_key", Span::mixed_site());
    let req_v = Ident::new("__cache_actix_request", Span::mixed_site());

    // Key.
    let key_steps = match &o.key {
        Some(KeySpec::Template(lit)) => {
            let ids = signature::key_segments(lit, &all, fn_name, &krate, &mut errors);
            quote!(#(#draft_v.id(#ids);)*)
        }
        Some(KeySpec::List(ids)) => params(ids, &derefs, &draft_v),
        None => {
            let (path, other) = default_key(&args, &o.skip, o.cache.as_ref());
            let mut steps = path_segments(&path, &derefs, &draft_v);
            steps.extend(params(&other, &derefs, &draft_v));
            steps
        }
    };
    let user = o.user.as_ref().map(|u| quote!(#draft_v.user(&(#u));));
    let version = o.version.map(|v| quote!(#draft_v.version(#v);));
    let resource = match &o.resource {
        Some(lit) => quote!(#lit),
        None => {
            let name = fn_name.to_string();
            quote!(#name)
        }
    };

    // Policy.
    let millis = |ms: u64| quote!(#private::StdDuration::from_millis(#ms));
    let mut policy = match o.ttl {
        Some(ms) => {
            let d = millis(ms);
            quote!(#private::Policy::ttl(#d))
        }
        None => quote!(#private::Policy::new()),
    };
    if !o.tags.is_empty() {
        let tags: Vec<TokenStream> = o
            .tags
            .iter()
            .map(|t| signature::template(t, &all, fn_name, &krate, &mut errors))
            .collect();
        policy.extend(quote!(.tags([#(#tags),*])));
    }
    if let Some(ms) = o.stale_while_revalidate {
        let d = millis(ms);
        policy.extend(quote!(.stale_while_revalidate(#d)));
    }
    if let Some(ms) = o.stale_if_error {
        let d = millis(ms);
        policy.extend(quote!(.stale_if_error(#d)));
    }
    if let Some(on) = o.lease {
        policy.extend(quote!(.lease(#on)));
    }
    errors.finish()?;

    let cache_select = match &o.cache {
        Some(expr) => quote! {
            let #owner_v = #expr;
            let #cache_v = #private::resolve_cache(&#owner_v);
        },
        None => quote!(let #cache_v = #private::default_cache();),
    };
    let signature::Return {
        probe,
        ty: ret,
        wrap,
        ..
    } = signature::shape(item, &krate);
    let ret_span = match &item.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => item.sig.ident.span(),
    };
    // The callee carries the return type's span: a value that is not `Serialize +
    // DeserializeOwned` is reported on the return type. The shape is inferred from the probe's
    // token (the shape of the return type itself, also behind a type alias).
    let (run_fn, wrap_args) = match &wrap {
        None => (quote!(#private::run::<#ret, _, _, _>), quote!()),
        Some((unwrap, wrap)) => (
            quote!(#private::run_wrapped::<#ret, _, _, _, _, _, _>),
            quote!(, #unwrap, #wrap),
        ),
    };
    let run_fn = respan(run_fn, ret_span);
    let unless = match &o.unless {
        Some(u) => quote!(#u),
        None => quote!(|_| false),
    };
    let block = &item.block;
    let body = quote!(#private::typed::<#ret, _>(async #block));
    let call = match http_return {
        // A finished Actix response: the handler's response is classified by `cache-actix`
        // (stored, shared with concurrent identical requests, or handed back), cached through
        // the same engine and stored format as the response layer, and rebuilt.
        Some(
            kind @ (signature::HttpReturn::ActixResponse
            | signature::HttpReturn::ActixResponder
            | signature::HttpReturn::ActixTuple),
        ) => {
            let produce = match kind {
                signature::HttpReturn::ActixResponse => quote!(response_origin(#body)),
                _ => quote!(responder_origin(#req_v, #body)),
            };
            quote_spanned! {ret_span=>
                ::cache_actix::__private::respond(
                    #private::run_http(
                        #cache_v,
                        #draft_v,
                        #policy,
                        ::cache_actix::__private::#produce,
                    )
                    .await,
                )
            }
        }
        // A finished Axum response: the same, through `cache-axum`. The value is rebuilt as the
        // written type (`Response`; a `Response` with another body type is an error on the
        // return type), or as `axum::response::Response` for `impl IntoResponse`.
        Some(kind) => {
            let target = match kind {
                signature::HttpReturn::AxumResponse => quote!(#ret),
                _ => quote!(::cache_axum::__private::Response),
            };
            quote_spanned! {ret_span=>
                ::cache_axum::__private::respond::<#target>(
                    #private::run_http(
                        #cache_v,
                        #draft_v,
                        #policy,
                        ::cache_axum::__private::response_origin(#body),
                    )
                    .await,
                )
            }
        }
        None => quote_spanned! {ret_span=>
            #run_fn(#cache_v, #draft_v, #policy, #body, #unless #wrap_args, #probe).await
        },
    };
    let ItemFn {
        attrs, vis, sig, ..
    } = item;
    let mut sig = sig.clone();
    if matches!(
        http_return,
        Some(signature::HttpReturn::ActixResponder | signature::HttpReturn::ActixTuple)
    ) {
        // `impl Responder` needs the request to become a response: a hidden extractor argument.
        sig.inputs
            .push(syn::parse_quote!(#req_v: ::cache_actix::__private::Request));
    }
    // A response tuple cannot be rebuilt from a stored response: the function returns the
    // response the tuple turns into (still a handler's return type).
    match http_return {
        Some(signature::HttpReturn::AxumTuple) => {
            sig.output = syn::parse_quote_spanned!(ret_span=> -> ::cache_axum::__private::Response);
        }
        Some(signature::HttpReturn::ActixTuple) => {
            sig.output =
                syn::parse_quote_spanned!(ret_span=> -> ::cache_actix::__private::HttpResponse);
        }
        _ => {}
    }
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #cache_select
            let #draft_v = {
                let mut #draft_v = #private::KeyDraft::new(#cache_v, #resource);
                #key_steps
                #user
                #version
                #draft_v.build()
            };
            #call
        }
    })
}

/// The default key: every name bound by an argument, except
/// * the bindings of a framework handle extractor (`State<T>`, `Data<T>`, `Extension<T>`; see
///   [`signature::is_handle`]),
/// * the argument that the `cache = <expr>` option names, when `<expr>` is exactly a bare
///   argument name (`cache = cache`),
/// * the names listed in `skip`;
///
/// split in two, in argument order: the names bound by URL path extractors
/// ([`signature::is_path`]), which become readable id segments, and the others, which become
/// hashed parameters.
///
/// Any other argument is in the key, whatever its type; one that is not `Serialize` fails on the
/// `KeyPart` bound, whose message says to `skip` it or to list the key with `key = [..]`.
fn default_key(args: &[Arg], skip: &[Ident], cache: Option<&Expr>) -> (Vec<Ident>, Vec<Ident>) {
    let cache_arg = cache.and_then(bare_ident);
    let names = |path: bool| -> Vec<Ident> {
        args.iter()
            .filter(|a| !a.handle && a.path == path)
            .flat_map(|a| a.bindings.iter())
            .filter(|b| !skip.contains(b) && Some(*b) != cache_arg)
            .cloned()
            .collect()
    };
    (names(true), names(false))
}

/// The name of `expr` when it is a bare identifier (`cache`), not a path, field or reference.
fn bare_ident(expr: &Expr) -> Option<&Ident> {
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => p.path.get_ident(),
        Expr::Group(g) => bare_ident(&g.expr),
        _ => None,
    }
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// The key steps for `ids`: each a hashed parameter named after the argument, encoding the
/// argument itself, or the value inside it for an argument listed in `derefs` (dereferenced
/// that many times: an extractor wrapper or an `Arc`/`Rc`, see `signature::key_derefs`).
fn params(ids: &[Ident], derefs: &[(Ident, usize)], draft: &Ident) -> TokenStream {
    let steps = ids.iter().map(|id| {
        let name = id.to_string();
        let n = derefs.iter().find(|(d, _)| d == id).map_or(0, |(_, n)| *n);
        let stars = (0..n).map(|_| quote_spanned!(id.span()=> *));
        quote_spanned!(id.span()=> #draft.param(#name, &#(#stars)*#id);)
    });
    quote!(#(#steps)*)
}

/// The key steps for the names bound by URL path extractors: readable id segments, in order
/// (`KeyDraft::path`, which hashes a value that has none, named after the argument).
fn path_segments(ids: &[Ident], derefs: &[(Ident, usize)], draft: &Ident) -> TokenStream {
    let steps = ids.iter().map(|id| {
        let name = id.to_string();
        let n = derefs.iter().find(|(d, _)| d == id).map_or(0, |(_, n)| *n);
        let stars = (0..n).map(|_| quote_spanned!(id.span()=> *));
        quote_spanned!(id.span()=> #draft.path(#name, &#(#stars)*#id);)
    });
    quote!(#(#steps)*)
}

fn list(names: &[Ident]) -> String {
    if names.is_empty() {
        return "it has none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
