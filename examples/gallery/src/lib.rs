//! `gallery`: a content-gallery API (users, content items, auto-generated items of 4 generation
//! types, tags, a community gallery) on embedded SQLite, cached with `cache-core` and
//! `cache-axum`. It is the first seed's service, built with the library, and a reading guide:
//! every annotation says where and why it is placed.
//!
//! Run it with `cargo run -p gallery` (in-memory cache, no Redis needed) or
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run -p gallery`; see `examples/gallery/README.md`.
//!
//! # Modules
//! | module | what |
//! | --- | --- |
//! | [`db`] | schema, deterministic seeding, connection pool, the real SQL queries |
//! | [`model`] | JSON types, the canonical `GET /content` filter, errors |
//! | [`app`] | the cached queries (`#[cached]`), writes (`#[invalidates]`), the merged view (fragments) |
//! | [`routes`] | handlers, extractors, the router with `ResponseCacheLayer` and `CacheContextLayer` |
//! | [`server`] | configuration from the environment, starting the service |
//! | [`demo`] | the demo walk (`gallery-demo`, and the end-to-end test) |
//! | [`load`] | the load test (`gallery-load`) |
//!
//! # Reads and their tags
//! | read | cached by | key (after `gallery:v1:`) | tags | TTL |
//! | --- | --- | --- | --- | --- |
//! | `GET /generation-types` | `#[cached]` on the handler | `generation_types` | `types:list` | 24h |
//! | `GET /tags` | `ResponseCacheLayer` | `tags:GET:/tags[:q=..]` | `tags:list` | 10m |
//! | `GET /gallery?page&limit&type` | `ResponseCacheLayer` (ETag, 304) | `gallery:GET:/gallery[:q=..]` | `gallery` | 5m |
//! | `GET /content?tag&type&sort&user&source&page&limit` | `#[cached]` on [`App::content_page`](app::App::content_page) | `content_list:q=hash(canonical filter)` | one of `tag:{t}`, `user:{u}:items`, `type:{g}`, `content:all` | 5m |
//! | `GET /content/{id}` | `#[cached]` on [`App::content_item`](app::App::content_item) | `content_item:{id}` | `content:{id}` | 1h |
//! | `GET /users/{id}/content_items` | `#[cached(user = ..)]` on the handler | `user_content_items:user={id}:q=..` | `user:{id}:items` | 10m |
//! | `GET /users/{id}/content_items_auto` | `#[cached(user = ..)]` on the handler | `user_content_items_auto:user={id}:q=..` | `user:{id}:items` | 10m |
//! | `GET /users/{id}/gallery` own fragment per type | `get_many_or_load` | `user_gallery:type:{t}:user={id}` | `user:{id}:items` | 10m |
//! | `GET /users/{id}/gallery` community fragment per type | `get_many_or_load` | `community:type:{t}` (shared) | `gallery:type:{t}` | 5m |
//!
//! # Writes and the tags they invalidate
//! Every write invalidates after its transaction committed, and only when it succeeded. The
//! tags are recorded in the `cache_outbox` table in the same transaction ([`outbox`]), so an
//! invalidation that Redis does not take at once is delivered by whichever instance reaches
//! Redis first, even if this one crashed.
//!
//! | write | route-level tags (`#[invalidates]`) | data-dependent tags |
//! | --- | --- | --- |
//! | `POST /content` | `content:all`, `tags:list`, `content:{id}`, `user:{owner}:items`, `type:{g}` | `tag:{t}` for its tags |
//! | `PUT /content/{id}/tags` | `content:{id}`, `content:all`, `tags:list`, `user:{owner}:items`, `type:{g}` | `tag:{t}` for old and new tags; `gallery`, `gallery:type:{g}` if the item has views or likes |
//! | `DELETE /content/{id}` | same as `PUT` | `tag:{t}` for its tags; `gallery`, `gallery:type:{g}` if engaged |
//!
//! Why this is complete: an item appears in a `GET /content` list only if it has the list's tag,
//! owner and type, so the list's one tag is always among the tags a write to that item names;
//! `content:all` covers unfiltered lists. The community gallery and the community fragments rank
//! only items with views or likes: a new item has neither, so a create cannot change them, and
//! only writes to engaged items invalidate `gallery`. Generation types never change through the
//! API.
//!
//! # Environment
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `ADDR` | listen address (`127.0.0.1:0`: a free port) | `127.0.0.1:3001` |
//! | `GALLERY_DB` | SQLite file, created and seeded on first start | `$TMPDIR/annocache-gallery.sqlite3` |
//! | `GALLERY_SEED_ITEMS`, `GALLERY_SEED_USERS`, `GALLERY_SEED` | seed volume and PRNG seed (another value re-creates the file) | 50000, 500, 42 |
//! | `GALLERY_DB_READERS` | reader connections | number of CPUs |
//! | `GALLERY_WARM` | `1`: warming from analytics ([`server::register_warmer`]) | off |
//! | `GALLERY_UNCACHED` | resources whose caching is off (comma-separated, from [`app::RESOURCES`]): the advisor experiment | none |
//! | `ADMIN_TOKEN` | bearer token of `/admin/cache/*` | `gallery-dev-token` |
//! | `REDIS_URL` | Redis; unset: in-memory cache | unset |
//! | `CACHE_ENABLED` | `false`: no caching (the load test's baseline) | `true` |
//! | `CACHE_NAMESPACE`, `CACHE_DEFAULT_TTL`, `CACHE_COMMAND_TIMEOUT_MS`, ... | see `cache_core::config` | namespace `gallery` |
//! | `LOG_FORMAT` | `json`: one JSON object per log line (`{"event":"cache_hit","key":...}`); else text | text |
//! | `RUST_LOG` | log filter; `info,cache_core=debug` adds every hit and miss | `info,cache_core=info` |

pub mod app;
pub mod db;
pub mod demo;
pub mod load;
pub mod model;
pub mod outbox;
pub mod routes;
pub mod server;
