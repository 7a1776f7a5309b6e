//! Parsing of attribute arguments into `name = value` options (and bare string literals), with
//! accumulated errors that keep the user's spans.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Lit, LitStr, Token};

use crate::duration::parse_millis;

/// Collects errors so that one expansion reports every problem at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// One argument of the attribute.
pub(crate) enum RawOpt {
    /// `name = value` (the name may be the keyword `crate`).
    Named { name: Ident, value: Expr },
    /// A bare string literal (the tags of `#[invalidates]`).
    Lit(LitStr),
}

impl Parse for RawOpt {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            return Ok(RawOpt::Lit(input.parse()?));
        }
        let name = Ident::parse_any(input)
            .map_err(|e| syn::Error::new(e.span(), "expected an option: `name = value`"))?;
        input.parse::<Token![=]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("expected `=` after `{name}`: write `{name} = ...`"),
            )
        })?;
        let value = input.parse()?;
        Ok(RawOpt::Named { name, value })
    }
}

/// Parses the attribute's arguments.
pub(crate) fn parse_args(args: TokenStream) -> syn::Result<Vec<RawOpt>> {
    Punctuated::<RawOpt, Token![,]>::parse_terminated
        .parse2(args)
        .map(|p| p.into_iter().collect())
}

/// Checks option names against the valid list and rejects duplicates. Returns the options that
/// passed, in order.
pub(crate) fn check_names(
    opts: Vec<(Ident, Expr)>,
    valid: &[&str],
    macro_name: &str,
    errors: &mut Errors,
) -> Vec<(String, Ident, Expr)> {
    let mut seen: Vec<(String, Span)> = Vec::new();
    let mut out = Vec::new();
    for (name, value) in opts {
        let s = name.unraw().to_string();
        if !valid.contains(&s.as_str()) {
            errors.at(
                name.span(),
                format!(
                    "unknown option `{s}` for `#[{macro_name}]`; valid options are: {}",
                    valid.join(", ")
                ),
            );
            continue;
        }
        if seen.iter().any(|(n, _)| *n == s) {
            errors.at(
                name.span(),
                format!("duplicate option `{s}`: each option may be given once; remove this one"),
            );
            continue;
        }
        seen.push((s.clone(), name.span()));
        out.push((s, name, value));
    }
    out
}

/// The string literal of `value`, or an error naming the option and the expected form.
pub(crate) fn lit_str(name: &str, value: &Expr, example: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(s) => Ok(s.clone()),
            _ => Err(syn::Error::new_spanned(
                value,
                format!("`{name}` takes a string literal, e.g. `{name} = {example}`"),
            )),
        },
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{name}` takes a string literal, e.g. `{name} = {example}`"),
        )),
    }
}

/// A duration literal parsed at compile time, in milliseconds; errors point at the literal.
pub(crate) fn duration(name: &str, value: &Expr) -> syn::Result<u64> {
    let lit = lit_str(name, value, "\"5m\"")?;
    parse_millis(&lit.value())
        .map_err(|msg| syn::Error::new(lit.span(), format!("`{name}`: {msg}")))
}

/// A `bool` literal.
pub(crate) fn bool_lit(name: &str, value: &Expr) -> syn::Result<bool> {
    if let Expr::Lit(l) = value {
        if let Lit::Bool(b) = &l.lit {
            return Ok(b.value);
        }
    }
    Err(syn::Error::new_spanned(
        value,
        format!("`{name}` takes `true` or `false`"),
    ))
}

/// A `u32` integer literal.
pub(crate) fn u32_lit(name: &str, value: &Expr) -> syn::Result<u32> {
    if let Expr::Lit(l) = value {
        if let Lit::Int(i) = &l.lit {
            return i
                .base10_parse::<u32>()
                .map_err(|_| syn::Error::new_spanned(i, format!("`{name}` must fit in a `u32`")));
        }
    }
    Err(syn::Error::new_spanned(
        value,
        format!("`{name}` takes an integer literal, e.g. `{name} = 2`"),
    ))
}

/// The elements of an array expression `[a, b]`.
pub(crate) fn array<'a>(name: &str, value: &'a Expr, example: &str) -> syn::Result<Vec<&'a Expr>> {
    match value {
        Expr::Array(a) => Ok(a.elems.iter().collect()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{name}` takes a list in brackets, e.g. `{name} = {example}`"),
        )),
    }
}

/// A plain identifier expression (`page`), as used by `key = [..]` and `skip = [..]`.
pub(crate) fn ident(name: &str, value: &Expr) -> syn::Result<Ident> {
    if let Expr::Path(p) = value {
        if p.qself.is_none() {
            if let Some(id) = p.path.get_ident() {
                return Ok(id.clone());
            }
        }
    }
    Err(syn::Error::new_spanned(
        value,
        format!("`{name}` lists parameter names, e.g. `{name} = [trig_id, page]`"),
    ))
}

/// The `crate = "path"` option: where `cache_core` is reachable from the user's crate.
pub(crate) fn crate_path(value: &Expr) -> syn::Result<syn::Path> {
    let lit = lit_str("crate", value, "\"my_app::cache_core\"")?;
    lit.parse::<syn::Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            "`crate` takes a path to the `cache_core` crate, e.g. `crate = \"my_app::cache_core\"`",
        )
    })
}
