//! Attribute macros for `cache-core`: `#[cached(...)]` and `#[invalidates(...)]`.
//!
//! Use them through `cache_core` (feature `macros`, on by default) rather than depending on this
//! crate directly. This crate only parses attributes and generates code; all runtime behaviour
//! lives in `cache_core::__private`.
//!
//! **Status:** the macros are being built (see the project's macros issue). Until they land, both
//! attributes expand to the annotated function unchanged, so code that uses them compiles and runs
//! without caching.

use proc_macro::TokenStream;

/// Caches the result of an `async fn` (placeholder: currently emits the function unchanged).
#[proc_macro_attribute]
pub fn cached(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Invalidates cache tags after an `async fn` succeeds (placeholder: currently emits the function
/// unchanged).
#[proc_macro_attribute]
pub fn invalidates(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
