//! What the macros need from the annotated function: its bound argument names, which arguments
//! are handles (not part of the key), the shape of its return type, and `{name}` templates.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Type};

use crate::options::Errors;

/// One typed argument: the names its pattern binds and whether its type looks like a handle.
pub(crate) struct Arg {
    pub(crate) bindings: Vec<Ident>,
    pub(crate) handle: bool,
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

/// The handle rule: an argument is left out of the default key when its type, after removing
/// references, is a path whose last segment is `State`, `Data`, `Arc` or `Cache`, or ends with
/// `Pool`, `Db`, `Client`, `State`, `Conn` or `Connection`.
pub(crate) fn is_handle(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => is_handle(&r.elem),
        Type::Paren(p) => is_handle(&p.elem),
        Type::Group(g) => is_handle(&g.elem),
        Type::Path(p) => p.path.segments.last().is_some_and(|seg| {
            let s = seg.ident.to_string();
            matches!(s.as_str(), "State" | "Data" | "Arc" | "Cache")
                || ["Pool", "Db", "Client", "State", "Conn", "Connection"]
                    .iter()
                    .any(|suffix| s.ends_with(suffix))
        }),
        _ => false,
    }
}

/// How the return value is cached (the name of a `__private::Shape` implementor), and the
/// return type itself.
pub(crate) fn shape(f: &ItemFn, krate: &TokenStream) -> (TokenStream, TokenStream) {
    let ty = match &f.sig.output {
        ReturnType::Default => return (quote!(#krate::__private::PlainShape), quote!(())),
        ReturnType::Type(_, ty) => ty,
    };
    let shape = match last_segment(ty).as_deref() {
        Some("Result") => quote!(ResultShape),
        Some("Option") => quote!(OptionShape),
        _ => quote!(PlainShape),
    };
    let span = ty.span();
    (
        quote_spanned!(span=> #krate::__private::#shape),
        quote!(#ty),
    )
}

fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Paren(p) => last_segment(&p.elem),
        Type::Group(g) => last_segment(&g.elem),
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// Compiles a `{name}` template into an expression of type `String`. `{name}` must be an
/// argument bound by the function (formatted with `Display`); `{{` and `}}` are literal braces.
pub(crate) fn template(
    lit: &LitStr,
    names: &[Ident],
    fn_name: &Ident,
    krate: &TokenStream,
    errors: &mut Errors,
) -> TokenStream {
    compile(&lit.value(), lit, names, fn_name, krate, errors)
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
        .map(|part| compile(part, lit, names, fn_name, krate, errors))
        .collect()
}

fn compile(
    text: &str,
    lit: &LitStr,
    names: &[Ident],
    fn_name: &Ident,
    krate: &TokenStream,
    errors: &mut Errors,
) -> TokenStream {
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
                    return quote!(#krate::__private::String::new());
                }
                match names.iter().find(|n| *n == name) {
                    Some(ident) => {
                        fmt.push_str("{}");
                        values.push(ident.clone());
                    }
                    None => errors.at(
                        lit.span(),
                        format!(
                            "`{{{name}}}` in {whole:?} is not a parameter of `{fn_name}`: a template may only \
                             name the function's arguments ({}); `{{{{` writes a literal brace",
                            available()
                        ),
                    ),
                }
            }
            '}' => {
                errors.at(
                    lit.span(),
                    format!("unmatched `}}` in {whole:?}: write `}}}}` for a literal brace"),
                );
                return quote!(#krate::__private::String::new());
            }
            c => fmt.push(c),
        }
    }
    if values.is_empty() {
        let plain = text.replace("{{", "{").replace("}}", "}");
        quote!(#krate::__private::String::from(#plain))
    } else {
        let fmt = LitStr::new(&fmt, lit.span());
        quote!(#krate::__private::format!(#fmt #(, #values)*))
    }
}
