//! What the macros need from the annotated function: its bound argument names, which arguments
//! are framework handle extractors (not part of the default key), how a key argument is
//! encoded, the shape of its return type, and `{name}` templates.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, ReturnType, Type};

use crate::options::Errors;

/// One typed argument: the names its pattern binds, whether it is a handle extractor (see
/// [`is_handle`]) or comes from the URL path (see [`is_path`]), and how many times its value is
/// dereferenced before it is encoded as a key part (see [`key_derefs`]; only for an argument
/// bound to one name).
pub(crate) struct Arg {
    pub(crate) bindings: Vec<Ident>,
    pub(crate) handle: bool,
    pub(crate) path: bool,
    pub(crate) derefs: usize,
}

/// The typed arguments of `f` (a `self` receiver is never part of a key).
pub(crate) fn args(f: &ItemFn) -> Vec<Arg> {
    f.sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => {
                let mut bindings = Vec::new();
                bind(&t.pat, &mut bindings);
                Some(Arg {
                    bindings,
                    handle: is_handle(&t.ty),
                    path: is_path(&t.ty),
                    derefs: match &*t.pat {
                        Pat::Ident(p) if p.subpat.is_none() => key_derefs(&t.ty),
                        _ => 0,
                    },
                })
            }
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// Every name bound by `pat` (`Path(id)` binds `id`, `(a, b)` binds `a` and `b`).
fn bind(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                bind(sub, out);
            }
        }
        Pat::Tuple(p) => p.elems.iter().for_each(|p| bind(p, out)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|p| bind(p, out)),
        Pat::Slice(p) => p.elems.iter().for_each(|p| bind(p, out)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| bind(&f.pat, out)),
        Pat::Reference(p) => bind(&p.pat, out),
        Pat::Paren(p) => bind(&p.pat, out),
        Pat::Type(p) => bind(&p.pat, out),
        _ => {}
    }
}

/// The handle rule: an argument is a framework handle extractor, left out of the default key,
/// when its type, after removing references, is a path whose last segment is `State`, `Data` or
/// `Extension` with generic arguments: axum's `State<T>` and `Extension<T>`, actix-web's
/// `web::Data<T>`. Nothing else is a handle by its type: a pool, a client or an `Arc<T>` is part
/// of the key unless `skip` (or the `cache = <argument>` option) names it.
pub(crate) fn is_handle(ty: &Type) -> bool {
    match strip(ty) {
        Type::Reference(r) => is_handle(&r.elem),
        Type::Path(p) => p.qself.is_none() && p.path.segments.last().is_some_and(|seg| {
            matches!(
                seg.ident.to_string().as_str(),
                "State" | "Data" | "Extension"
            ) && matches!(&seg.arguments, PathArguments::AngleBracketed(a) if !a.args.is_empty())
        }),
        _ => false,
    }
}

/// The path rule: an argument comes from the URL path, and its default key part is readable id
/// segments (`KeyDraft::path`), when its type, after removing references, is a path whose last
/// segment is `Path` with one generic argument: axum's `Path<T>` (also destructured,
/// `Path((trig, page)): Path<(u32, u32)>`) and actix-web's `web::Path<T>`.
pub(crate) fn is_path(ty: &Type) -> bool {
    match strip(ty) {
        Type::Reference(r) => is_path(&r.elem),
        t => one_arg_path(t, &["Path"]),
    }
}

/// How many `*` the key step puts before an argument bound to one name: for an extractor
/// wrapper ([`is_wrapper`]) or a shared pointer (`Arc<T>`, `Rc<T>`, which are not `Serialize`
/// without serde's `rc` feature), one per reference around it plus one, so that the key encodes
/// the value inside (`filter: Arc<Filter>` is keyed as the `Filter`); 0 for any other type,
/// encoded as it is.
fn key_derefs(ty: &Type) -> usize {
    let mut refs = 0;
    let mut ty = strip(ty);
    while let Type::Reference(r) = ty {
        refs += 1;
        ty = strip(&r.elem);
    }
    if is_wrapper(ty) || is_shared(ty) {
        refs + 1
    } else {
        0
    }
}

/// The extractor rule: a type whose last path segment is `Path`, `Query`, `Json` or `Form` with
/// one generic argument (`web::Path<(u32, String)>`, `Query<Filter>`) is keyed by `&*value`: the
/// extractors of axum and actix-web deref to the extracted value, which is `Serialize` where the
/// wrapper (actix-web's `Path`, whose field is private) is not.
fn is_wrapper(ty: &Type) -> bool {
    one_arg_path(ty, &["Path", "Query", "Json", "Form"])
}

/// A shared pointer to one value: last path segment `Arc` or `Rc` with one generic argument.
fn is_shared(ty: &Type) -> bool {
    one_arg_path(ty, &["Arc", "Rc"])
}

/// Whether `ty` is a path whose last segment is one of `names` with one generic argument.
fn one_arg_path(ty: &Type, names: &[&str]) -> bool {
    let Type::Path(p) = strip(ty) else {
        return false;
    };
    p.qself.is_none()
        && p.path.segments.last().is_some_and(|seg| {
            names.iter().any(|n| seg.ident == n)
                && matches!(&seg.arguments, PathArguments::AngleBracketed(a) if a.args.len() == 1)
        })
}

/// How a function's return value is cached.
pub(crate) struct Return {
    /// The `__private::Shape` implementor chosen by the return type's last path segment
    /// (`Result`, `Option`, anything else), spanned at the return type. `#[invalidates]` uses it;
    /// `#[cached]` uses [`Return::probe`], which also sees through type aliases.
    pub(crate) shape: TokenStream,
    /// An expression of type `__private::ShapeToken<S>`, where `S` is the shape of the return
    /// type itself (not of its name): autoref specialization on `__private::ShapeProbe`, so
    /// `type ApiResult<T> = Result<T, ApiError>` is cached as a `Result`. Spanned at the
    /// return type.
    pub(crate) probe: TokenStream,
    /// The written return type, with every `impl Trait` replaced by `_` (so it can be named in
    /// a turbofish).
    pub(crate) ty: TokenStream,
    /// For a `Json<T>` return (alone or in a `Result`/`Option`): the closures that unwrap the
    /// written type into the cached form (`Json<T>` -> `T`) and wrap it back.
    pub(crate) wrap: Option<(TokenStream, TokenStream)>,
}

/// How the return value is cached: the shape is that of the return type (`Result<T, E>`,
/// `Option<T>`, anything else), also behind a type alias (see [`Return::probe`]); a `Json<T>`
/// (tuple struct `Json(pub T)` of axum and actix-web), alone or as the `Ok`/`Some` type of a
/// written `Result`/`Option`, is cached as `T` and re-wrapped. A `Json<T>` behind an alias is
/// not seen: its `Json` is then the cached value, which is not `Deserialize`, and the
/// `Cacheable` error says to write the `Json<..>` out.
pub(crate) fn shape(f: &ItemFn, krate: &TokenStream) -> Return {
    let ty = match &f.sig.output {
        ReturnType::Default => {
            return Return {
                shape: quote!(#krate::__private::PlainShape),
                probe: probe(&quote!(()), f.sig.ident.span(), krate),
                ty: quote!(()),
                wrap: None,
            }
        }
        ReturnType::Type(_, ty) => ty,
    };
    let outer = last_segment(ty);
    let shape = match outer.as_deref() {
        Some("Result") => quote!(ResultShape),
        Some("Option") => quote!(OptionShape),
        _ => quote!(PlainShape),
    };
    let span = ty.span();
    let written = infer_impl(ty);
    let w = Ident::new("__cache_core_w", Span::mixed_site());
    let j = Ident::new("__cache_core_j", Span::mixed_site());
    let wrap = match outer.as_deref() {
        Some("Result" | "Option") => first_type_arg(ty).and_then(json_path).map(|path| {
            (
                quote!(|#w: #written| #w.map(|#j| #j.0)),
                quote!(|#w| #w.map(#path)),
            )
        }),
        _ => json_path(ty).map(|path| (quote!(|#w: #written| #w.0), quote!(|#w| #path(#w)))),
    };
    Return {
        shape: quote_spanned!(span=> #krate::__private::#shape),
        probe: probe(&quote!(#written), span, krate),
        ty: quote!(#written),
        wrap,
    }
}

/// The shape token of `ty` (see [`Return::probe`]). The method is found by value on
/// `ShapeProbe<Result<..>>` / `ShapeProbe<Option<..>>` (`KnownShape`) before autoref reaches the
/// `PlainShape` fallback on `&ShapeProbe<R>` (`PlainFallback`). The shape of a `Json<T>` return,
/// cached as `T`, is that of the written type too (`Result<Json<T>, E>` and `Result<T, E>` are
/// both `Result`s).
fn probe(ty: &TokenStream, span: Span, krate: &TokenStream) -> TokenStream {
    quote_spanned! {span=>
        {
            #[allow(unused_imports)]
            use #krate::__private::{KnownShape as _, PlainFallback as _};
            #krate::__private::ShapeProbe::<#ty>::new().__cache_core_shape()
        }
    }
}

/// The path of a `Json<T>` type without its generic argument (`axum::Json`, `web::Json`).
fn json_path(ty: &Type) -> Option<syn::Path> {
    let Type::Path(p) = strip(ty) else {
        return None;
    };
    let last = p.path.segments.last()?;
    if p.qself.is_some() || last.ident != "Json" {
        return None;
    }
    match &last.arguments {
        PathArguments::AngleBracketed(a)
            if a.args.len() == 1 && matches!(a.args[0], GenericArgument::Type(_)) => {}
        _ => return None,
    }
    let mut path = p.path.clone();
    if let Some(seg) = path.segments.last_mut() {
        seg.arguments = PathArguments::None;
    }
    Some(path)
}

/// The first generic type argument of the last path segment (`T` of `Result<T, E>`).
fn first_type_arg(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = strip(ty) else {
        return None;
    };
    match &p.path.segments.last()?.arguments {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|arg| match arg {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn strip(ty: &Type) -> &Type {
    match ty {
        Type::Paren(p) => strip(&p.elem),
        Type::Group(g) => strip(&g.elem),
        _ => ty,
    }
}

/// A finished HTTP response returned by a handler, cached whole through `cache-actix` or
/// `cache-axum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpReturn {
    /// Actix: `-> HttpResponse` (or `HttpResponse<B>`).
    ActixResponse,
    /// Actix: `-> impl Responder`.
    ActixResponder,
    /// Axum: `-> Response` (or `Response<Body>`).
    AxumResponse,
    /// Axum: `-> impl IntoResponse`.
    AxumIntoResponse,
    /// Axum: a tuple that is a response (see [`response_tuple`]), such as
    /// `(StatusCode, Json<T>)`; the function then returns `axum::response::Response`.
    AxumTuple,
    /// Actix: `-> (R, StatusCode)` (`R: Responder`); the function then returns `HttpResponse`.
    ActixTuple,
}

/// Whether the return type is a whole HTTP response (top level only), and whose: a path whose
/// last segment is `HttpResponse` (Actix) or `Response` (Axum), with or without generic
/// arguments, or an `impl Trait` with a `Responder` (Actix) or `IntoResponse` (Axum) bound.
pub(crate) fn http_return(ty: &Type) -> Option<HttpReturn> {
    match strip(ty) {
        Type::ImplTrait(i) => i.bounds.iter().find_map(|b| match b {
            syn::TypeParamBound::Trait(t) => {
                match t
                    .path
                    .segments
                    .last()
                    .map(|s| s.ident.to_string())
                    .as_deref()
                {
                    Some("Responder") => Some(HttpReturn::ActixResponder),
                    Some("IntoResponse") => Some(HttpReturn::AxumIntoResponse),
                    _ => None,
                }
            }
            _ => None,
        }),
        t @ Type::Path(_) => match last_segment(t).as_deref() {
            Some("HttpResponse") => Some(HttpReturn::ActixResponse),
            Some("Response") => Some(HttpReturn::AxumResponse),
            _ => None,
        },
        t @ Type::Tuple(_) => response_tuple(t),
        _ => None,
    }
}

/// The tuple rule: a tuple of two or more elements is a whole response
/// * for Actix (`impl Responder for (R, StatusCode)`) when its last element's last path segment
///   is `StatusCode`: `(web::Json<T>, StatusCode)`, `(impl Responder, StatusCode)`;
/// * for Axum (`IntoResponse` for `(parts.., body)`) when an element before the last is a
///   response part (last path segment `StatusCode`, `HeaderMap`, `Parts`, `Extensions`,
///   `AppendHeaders` or `TypedHeader`, or an array of pairs such as `[(HeaderName, &str); 1]`),
///   or when its last element is a response body (`impl Trait`, or last path segment `Json`,
///   `Html`, `Redirect` or `Response`): `(StatusCode, Json<T>)`,
///   `(StatusCode, HeaderMap, Json<T>)`, `(HeaderMap, Json<T>)`, `(StatusCode, String)`.
///
/// None of these is `Serialize` (a `StatusCode`, a `HeaderMap`, a `Json<T>` is not), so no
/// cacheable value is taken for a response.
pub(crate) fn response_tuple(ty: &Type) -> Option<HttpReturn> {
    let Type::Tuple(t) = strip(ty) else {
        return None;
    };
    let elems: Vec<&Type> = t.elems.iter().collect();
    let (last, parts) = elems.split_last()?;
    if parts.is_empty() {
        return None;
    }
    if last_segment(last).as_deref() == Some("StatusCode") {
        return Some(HttpReturn::ActixTuple);
    }
    let is_part = |ty: &Type| match strip(ty) {
        Type::Array(a) => matches!(strip(&a.elem), Type::Tuple(p) if p.elems.len() == 2),
        t => matches!(
            last_segment(t).as_deref(),
            Some(
                "StatusCode"
                    | "HeaderMap"
                    | "Parts"
                    | "Extensions"
                    | "AppendHeaders"
                    | "TypedHeader"
            )
        ),
    };
    let is_body = match strip(last) {
        Type::ImplTrait(_) => true,
        t => matches!(
            last_segment(t).as_deref(),
            Some("Json" | "Html" | "Redirect" | "Response")
        ),
    };
    (is_body || parts.iter().any(|p| is_part(p))).then_some(HttpReturn::AxumTuple)
}

/// The part of a return type that `#[cached]` cannot store, if any (checked when the return
/// type is not a whole response, see [`http_return`]): an opaque `impl Trait` or `dyn Trait`
/// (also behind a reference, `Box`, `Arc` or `Rc`), an `HttpResponseBuilder`, or a finished HTTP
/// response (`HttpResponse`, `Response`, a response tuple) as the `Ok`/`Some` type.
pub(crate) fn uncacheable(ty: &Type) -> Option<&Type> {
    match strip(ty) {
        t @ Type::Path(_) => match last_segment(t).as_deref() {
            Some("HttpResponse" | "Response" | "HttpResponseBuilder") => Some(t),
            Some("Result" | "Option") => first_type_arg(t).and_then(uncacheable),
            _ => opaque(t),
        },
        t @ Type::Tuple(_) if response_tuple(t).is_some() => Some(t),
        t => opaque(t),
    }
}

/// `ty` when it is an `impl Trait` or `dyn Trait`, or a reference, `Box`, `Arc` or `Rc` of one.
fn opaque(ty: &Type) -> Option<&Type> {
    let inner = match strip(ty) {
        t @ (Type::ImplTrait(_) | Type::TraitObject(_)) => return Some(t),
        Type::Reference(r) => &r.elem,
        t @ Type::Path(_) if matches!(last_segment(t).as_deref(), Some("Box" | "Arc" | "Rc")) => {
            first_type_arg(t)?
        }
        _ => return None,
    };
    opaque(inner).map(|_| strip(ty))
}

/// Whether a return type contains an `impl Trait` (its type cannot be named, so its shape can
/// only be read from its name).
pub(crate) fn has_impl_trait(output: &ReturnType) -> bool {
    match output {
        ReturnType::Default => false,
        ReturnType::Type(_, ty) => {
            quote!(#ty).to_string() != {
                let t = infer_impl(ty);
                quote!(#t).to_string()
            }
        }
    }
}

/// `ty` with every `impl Trait` replaced by `_`.
fn infer_impl(ty: &Type) -> Type {
    let mut ty = ty.clone();
    replace_impl(&mut ty);
    ty
}

fn replace_impl(ty: &mut Type) {
    match ty {
        Type::ImplTrait(i) => {
            let span = i.impl_token.span;
            *ty = syn::parse_quote_spanned!(span=> _);
        }
        Type::Paren(p) => replace_impl(&mut p.elem),
        Type::Group(g) => replace_impl(&mut g.elem),
        Type::Reference(r) => replace_impl(&mut r.elem),
        Type::Tuple(t) => t.elems.iter_mut().for_each(replace_impl),
        Type::Array(a) => replace_impl(&mut a.elem),
        Type::Slice(s) => replace_impl(&mut s.elem),
        Type::Path(p) => {
            for seg in p.path.segments.iter_mut() {
                if let PathArguments::AngleBracketed(a) = &mut seg.arguments {
                    for arg in a.args.iter_mut() {
                        if let GenericArgument::Type(t) = arg {
                            replace_impl(t);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn last_segment(ty: &Type) -> Option<String> {
    match strip(ty) {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// Compiles a `{name}` template into an expression of type `String`. `{name}` must be an
/// argument bound by the function, optionally followed by fields (`{claims.sub}`, `{pair.0}`),
/// formatted with `Display`; `{{` and `}}` are literal braces.
pub(crate) fn template(
    lit: &LitStr,
    names: &[Ident],
    fn_name: &Ident,
    krate: &TokenStream,
    errors: &mut Errors,
) -> TokenStream {
    compile(&lit.value(), lit, names, None, fn_name, krate, errors).0
}

/// [`template`] that may also name `{result}` / `{result.field}`: the success value (the `Ok`
/// or `Some` value, or the whole return value), bound to `result_var`. Returns the expression
/// and whether it uses the result (it must then be evaluated after the body).
pub(crate) fn result_template(
    lit: &LitStr,
    names: &[Ident],
    result_var: &Ident,
    fn_name: &Ident,
    krate: &TokenStream,
    errors: &mut Errors,
) -> (TokenStream, bool) {
    compile(
        &lit.value(),
        lit,
        names,
        Some(result_var),
        fn_name,
        krate,
        errors,
    )
}

/// Compiles a key template into one expression per id segment: the template is split at the
/// `:`s outside `{..}`, so `"{trig_id}:{page}"` gives the segments `trig_id` and `page` (each
/// sanitised by the key builder, so a `:` inside a value cannot fake a segment).
pub(crate) fn key_segments(
    lit: &LitStr,
    names: &[Ident],
    fn_name: &Ident,
    krate: &TokenStream,
    errors: &mut Errors,
) -> Vec<TokenStream> {
    let text = lit.value();
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(|part| compile(part, lit, names, None, fn_name, krate, errors).0)
        .collect()
}

fn compile(
    text: &str,
    lit: &LitStr,
    names: &[Ident],
    result_var: Option<&Ident>,
    fn_name: &Ident,
    krate: &TokenStream,
    errors: &mut Errors,
) -> (TokenStream, bool) {
    let mut uses_result = false;
    let whole = lit.value();
    let mut fmt = String::new();
    let mut values = Vec::new();
    let mut chars = text.chars().peekable();
    let available = || {
        if names.is_empty() {
            "it has none".to_owned()
        } else {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                fmt.push_str("{{");
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                fmt.push_str("}}");
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                let name = name.trim();
                if !closed {
                    errors.at(
                        lit.span(),
                        format!("unclosed `{{` in {whole:?}: write `{{name}}` for a parameter or `{{{{` for a literal brace"),
                    );
                    return (quote!(#krate::__private::String::new()), uses_result);
                }
                let mut parts = name.split('.');
                let head = parts.next().unwrap_or_default().trim();
                let mut fields = Vec::new();
                for part in parts {
                    match syn::parse_str::<syn::Member>(part.trim()) {
                        Ok(m) => fields.push(m),
                        Err(_) => errors.at(
                            lit.span(),
                            format!(
                                "`{{{name}}}` in {whole:?}: after the parameter name, only \
                                 `.field` or `.0` may follow"
                            ),
                        ),
                    }
                }
                let fields = fields.iter().map(|f| quote!(.#f));
                let found = match names.iter().find(|n| *n == head) {
                    Some(ident) => Some(quote!(#ident)),
                    None => match result_var {
                        Some(var) if head == "result" => {
                            uses_result = true;
                            Some(quote!(#var))
                        }
                        _ => None,
                    },
                };
                match found {
                    Some(base) => {
                        fmt.push_str("{}");
                        values.push(quote!(#base #(#fields)*));
                    }
                    None => errors.at(
                        lit.span(),
                        format!(
                            "`{{{name}}}` in {whole:?} is not a parameter of `{fn_name}`: a template may only \
                             name the function's arguments ({}){}; `{{{{` writes a literal brace",
                            available(),
                            if result_var.is_some() {
                                ", or `{result}` / `{result.field}` for the success value"
                            } else {
                                ""
                            }
                        ),
                    ),
                }
            }
            '}' => {
                errors.at(
                    lit.span(),
                    format!("unmatched `}}` in {whole:?}: write `}}}}` for a literal brace"),
                );
                return (quote!(#krate::__private::String::new()), uses_result);
            }
            c => fmt.push(c),
        }
    }
    let expr = if values.is_empty() {
        let plain = text.replace("{{", "{").replace("}}", "}");
        quote!(#krate::__private::String::from(#plain))
    } else {
        let fmt = LitStr::new(&fmt, lit.span());
        quote!(#krate::__private::format!(#fmt #(, #values)*))
    };
    (expr, uses_result)
}
