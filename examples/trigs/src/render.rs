//! The generated images: a trig's map, a user's map and a user's badge, as PNG bytes.
//!
//! Drawn with [`tiny_skia`] (anti-aliased shapes, and its PNG encoder) and the built-in bitmap
//! fonts of [`embedded_graphics`] (text and digits, drawn into the same pixmap), both pure
//! Rust: no system font, no C library. Rendering is **deterministic**: the same data gives the
//! same bytes (no clock, no randomness, points drawn in id order), so a cached image, an
//! uncached one and one rendered again after an invalidation that changed nothing are equal,
//! and so are their `ETag`s.
//!
//! Colours of a marker, by the condition of the latest log: green `Good`, yellow-green
//! `Slightly damaged`, orange `Damaged`, red-orange `Toppled`, red `Missing`, purple
//! `Not found`; a trig never logged is a white marker with a grey ring.

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10, FONT_9X15_BOLD};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{
    DrawTarget, Drawable, OriginDimensions, Pixel, Point, RgbColor, Size,
};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
use tiny_skia::{
    Color, FillRule, Paint, PathBuilder, Pixmap, PremultipliedColorU8, Rect, Stroke, Transform,
};

use crate::error::ApiError;
use crate::model::{MapPoint, TrigMap, User, UserMap};

/// A trig's map shows the trigs within this distance of it (km).
pub const NEIGHBOUR_RADIUS_KM: f64 = 25.0;
/// Width and height of `GET /v1/trigs/{id}/map` (px).
pub const TRIG_MAP_SIZE: (u32, u32) = (400, 400);
/// Width and height of `GET /v1/users/{id}/map` (px).
pub const USER_MAP_SIZE: (u32, u32) = (360, 480);
/// Width and height of `GET /v1/users/{id}/badge` (px).
pub const BADGE_SIZE: (u32, u32) = (320, 96);

/// Kilometres per degree of latitude (mean Earth radius 6371 km).
const KM_PER_DEGREE: f64 = 111.195;

/// Distance in km between two `(lat, lon)` points (equirectangular approximation, plenty at
/// 25 km). **Symmetric to the bit**: `distance_km(a, b) == distance_km(b, a)` (the mean latitude
/// is a commutative sum, the differences are squared), so "b is on a's map" and "a is on b's
/// map" always agree, which the map invalidation relies on ([`crate::db::maps_showing`]).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let cos = ((a.0 + b.0) / 2.0).to_radians().cos();
    let dy = (a.0 - b.0) * KM_PER_DEGREE;
    let dx = (a.1 - b.1) * KM_PER_DEGREE * cos;
    (dx * dx + dy * dy).sqrt()
}

const TITLE_BG: (u8, u8, u8) = (31, 78, 95);
const CELL_BG: (u8, u8, u8) = (45, 100, 118);
const PALE: (u8, u8, u8) = (190, 210, 215);
const LAND: (u8, u8, u8) = (232, 240, 222);
const PAPER: (u8, u8, u8) = (250, 250, 246);
const INK: (u8, u8, u8) = (40, 40, 40);
const GREY: (u8, u8, u8) = (120, 120, 120);

/// Marker colour of a trig by the condition of its latest log; `None`: never logged.
fn condition_colour(condition: Option<&str>) -> Option<(u8, u8, u8)> {
    Some(match condition? {
        "Good" => (46, 157, 74),
        "Slightly damaged" => (165, 199, 59),
        "Damaged" => (240, 160, 48),
        "Toppled" => (224, 96, 32),
        "Missing" => (200, 50, 50),
        _ => (130, 60, 150), // "Not found"
    })
}

fn colour((r, g, b): (u8, u8, u8)) -> Color {
    Color::from_rgba8(r, g, b, 255)
}

/// A pixmap with the few drawing operations the images need; text goes through
/// `embedded-graphics` ([`DrawTarget`]), shapes through `tiny-skia`.
struct Canvas {
    pixmap: Pixmap,
}

impl Canvas {
    fn new((width, height): (u32, u32), background: (u8, u8, u8)) -> Result<Canvas, ApiError> {
        let mut pixmap = Pixmap::new(width, height)
            .ok_or_else(|| ApiError::Internal(format!("no {width}x{height} pixmap")))?;
        pixmap.fill(colour(background));
        Ok(Canvas { pixmap })
    }

    fn paint(rgb: (u8, u8, u8)) -> Paint<'static> {
        let mut paint = Paint::default();
        paint.set_color(colour(rgb));
        paint.anti_alias = true;
        paint
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: (u8, u8, u8)) {
        if let Some(rect) = Rect::from_xywh(x, y, w, h) {
            self.pixmap
                .fill_rect(rect, &Self::paint(fill), Transform::identity(), None);
        }
    }

    fn circle(
        &mut self,
        (x, y): (f32, f32),
        radius: f32,
        fill: Option<(u8, u8, u8)>,
        ring: Option<((u8, u8, u8), f32)>,
    ) {
        let Some(path) = PathBuilder::from_circle(x, y, radius) else {
            return;
        };
        if let Some(fill) = fill {
            self.pixmap.fill_path(
                &path,
                &Self::paint(fill),
                FillRule::Winding,
                Transform::identity(),
                None,
            );
        }
        if let Some((rgb, width)) = ring {
            let stroke = Stroke {
                width,
                ..Stroke::default()
            };
            self.pixmap.stroke_path(
                &path,
                &Self::paint(rgb),
                &stroke,
                Transform::identity(),
                None,
            );
        }
    }

    fn line(&mut self, from: (f32, f32), to: (f32, f32), rgb: (u8, u8, u8), width: f32) {
        let mut pb = PathBuilder::new();
        pb.move_to(from.0, from.1);
        pb.line_to(to.0, to.1);
        let Some(path) = pb.finish() else {
            return;
        };
        let stroke = Stroke {
            width,
            ..Stroke::default()
        };
        self.pixmap.stroke_path(
            &path,
            &Self::paint(rgb),
            &stroke,
            Transform::identity(),
            None,
        );
    }

    /// `text` with its top edge at `y`, starting (or centred, or ending) at `x`; at most `max`
    /// characters (non-ASCII characters are drawn as `?` by the font).
    #[allow(clippy::too_many_arguments)]
    fn text(
        &mut self,
        text: &str,
        (x, y): (i32, i32),
        font: &MonoFont<'_>,
        (r, g, b): (u8, u8, u8),
        alignment: Alignment,
        max: usize,
    ) {
        let text: String = text.chars().take(max).collect();
        let style = MonoTextStyle::new(font, Rgb888::new(r, g, b));
        let layout = TextStyleBuilder::new()
            .alignment(alignment)
            .baseline(Baseline::Top)
            .build();
        let _ = Text::with_text_style(&text, Point::new(x, y), style, layout).draw(self);
    }

    fn png(self) -> Result<Vec<u8>, ApiError> {
        self.pixmap
            .encode_png()
            .map_err(|e| ApiError::Internal(format!("PNG encoding: {e}")))
    }
}

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.pixmap.width(), self.pixmap.height())
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let (w, h) = (self.pixmap.width() as i32, self.pixmap.height() as i32);
        let data = self.pixmap.pixels_mut();
        for Pixel(p, c) in pixels {
            if (0..w).contains(&p.x) && (0..h).contains(&p.y) {
                if let Some(px) = PremultipliedColorU8::from_rgba(c.r(), c.g(), c.b(), 255) {
                    data[(p.y * w + p.x) as usize] = px;
                }
            }
        }
        Ok(())
    }
}

/// A title band across the top of an image.
fn title(canvas: &mut Canvas, text: &str, width: u32) {
    canvas.rect(0.0, 0.0, width as f32, 30.0, TITLE_BG);
    let max = (width as usize - 16) / 9;
    canvas.text(
        text,
        (8, 8),
        &FONT_9X15_BOLD,
        (255, 255, 255),
        Alignment::Left,
        max,
    );
}

/// A trig marker: filled with its condition's colour when logged, a white dot with a grey ring
/// when never logged.
fn marker(canvas: &mut Canvas, at: (f32, f32), radius: f32, point: &MapPoint) {
    match condition_colour(point.condition.as_deref()) {
        Some(fill) => canvas.circle(at, radius, Some(fill), Some((INK, 1.0))),
        None => canvas.circle(at, radius, Some((255, 255, 255)), Some((GREY, 1.5))),
    }
}

/// `GET /v1/trigs/{id}/map`: [`TRIG_MAP_SIZE`]. The trig at the centre (ringed in red), every
/// trig within [`NEIGHBOUR_RADIUS_KM`] at its place, a 10 km scale bar, the trig's log count
/// and how many of its neighbours were ever logged.
///
/// # Errors
/// [`ApiError::Internal`] if the PNG cannot be encoded.
pub fn trig_map(map: &TrigMap) -> Result<Vec<u8>, ApiError> {
    let (width, height) = TRIG_MAP_SIZE;
    let mut canvas = Canvas::new(TRIG_MAP_SIZE, PAPER)?;
    title(
        &mut canvas,
        &format!("{} {}", map.waypoint, map.name),
        width,
    );
    let centre = (width as f32 / 2.0, 204.0);
    let radius_px = 156.0_f32;
    let px_per_km = f64::from(radius_px) / NEIGHBOUR_RADIUS_KM;
    canvas.circle(centre, radius_px, Some(LAND), Some(((150, 170, 140), 1.0)));
    let c = &map.centre;
    let cos = c.lat.to_radians().cos();
    let place = |p: &MapPoint| {
        let dx = (p.lon - c.lon) * KM_PER_DEGREE * cos * px_per_km;
        let dy = (p.lat - c.lat) * KM_PER_DEGREE * px_per_km;
        (centre.0 + dx as f32, centre.1 - dy as f32)
    };
    for p in map.nearby.iter().filter(|p| p.id != c.id) {
        marker(&mut canvas, place(p), 5.0, p);
    }
    canvas.circle(centre, 13.0, None, Some(((200, 30, 30), 2.0)));
    marker(&mut canvas, centre, 8.0, c);

    // Footer: a 10 km scale bar, the counts.
    let bar = (10.0 * px_per_km) as f32;
    let y = height as f32 - 22.0;
    canvas.line((12.0, y), (12.0 + bar, y), INK, 2.0);
    canvas.line((12.0, y - 4.0), (12.0, y + 4.0), INK, 1.5);
    canvas.line((12.0 + bar, y - 4.0), (12.0 + bar, y + 4.0), INK, 1.5);
    canvas.text(
        "10 km",
        (20 + bar as i32, y as i32 - 5),
        &FONT_6X10,
        INK,
        Alignment::Left,
        8,
    );
    let neighbours = map.nearby.len() - 1;
    let logged = map
        .nearby
        .iter()
        .filter(|p| p.id != c.id && p.logs > 0)
        .count();
    canvas.text(
        &format!("{} logs | {logged}/{neighbours} nearby logged", c.logs),
        (width as i32 - 10, y as i32 - 5),
        &FONT_6X10,
        INK,
        Alignment::Right,
        48,
    );
    canvas.png()
}

/// `GET /v1/users/{id}/map`: [`USER_MAP_SIZE`]. Every trig the user logged, on a frame of the
/// seed's area (latitude 49.8 to 58.8, longitude -6.3 to 1.8) with a one-degree graticule,
/// coloured by the condition of the user's latest log of it; their trig and log counts.
///
/// # Errors
/// [`ApiError::Internal`] if the PNG cannot be encoded.
pub fn user_map(map: &UserMap) -> Result<Vec<u8>, ApiError> {
    const LAT: (f64, f64) = (49.8, 58.8);
    const LON: (f64, f64) = (-6.3, 1.8);
    let (width, height) = USER_MAP_SIZE;
    let mut canvas = Canvas::new(USER_MAP_SIZE, PAPER)?;
    title(&mut canvas, &map.name, width);
    // Equirectangular at the frame's middle latitude, as large as fits, centred.
    let cos = ((LAT.0 + LAT.1) / 2.0).to_radians().cos();
    let (area_w, area_h) = (f64::from(width) - 20.0, f64::from(height) - 80.0);
    let scale = (area_w / ((LON.1 - LON.0) * cos)).min(area_h / (LAT.1 - LAT.0));
    let frame_w = (LON.1 - LON.0) * cos * scale;
    let (left, top) = ((f64::from(width) - frame_w) / 2.0, 40.0);
    let place = |lat: f64, lon: f64| {
        (
            (left + (lon - LON.0) * cos * scale) as f32,
            (top + (LAT.1 - lat) * scale) as f32,
        )
    };
    let (x0, y0) = place(LAT.1, LON.0);
    let (x1, y1) = place(LAT.0, LON.1);
    canvas.rect(x0, y0, x1 - x0, y1 - y0, LAND);
    for lat in 50..=58 {
        let lat = f64::from(lat);
        canvas.line(place(lat, LON.0), place(lat, LON.1), (205, 212, 196), 1.0);
    }
    for lon in -6..=1 {
        let lon = f64::from(lon);
        canvas.line(place(LAT.0, lon), place(LAT.1, lon), (205, 212, 196), 1.0);
    }
    for p in &map.trigs {
        marker(&mut canvas, place(p.lat, p.lon), 3.5, p);
    }
    let logs: u64 = map.trigs.iter().map(|p| p.logs).sum();
    canvas.text(
        &format!("{} trigs logged, {logs} logs", map.trigs.len()),
        (width as i32 / 2, height as i32 - 28),
        &FONT_6X10,
        INK,
        Alignment::Center,
        56,
    );
    canvas.png()
}

/// `GET /v1/users/{id}/badge`: [`BADGE_SIZE`]. The user's name, registration date, and three
/// counts: logs, distinct trigs logged, photos.
///
/// # Errors
/// [`ApiError::Internal`] if the PNG cannot be encoded.
pub fn badge(user: &User) -> Result<Vec<u8>, ApiError> {
    let (width, _) = BADGE_SIZE;
    let mut canvas = Canvas::new(BADGE_SIZE, TITLE_BG)?;
    canvas.text(
        &user.name,
        (10, 8),
        &FONT_9X15_BOLD,
        (255, 255, 255),
        Alignment::Left,
        20,
    );
    canvas.text(
        &format!("since {}", user.joined),
        (width as i32 - 10, 11),
        &FONT_6X10,
        PALE,
        Alignment::Right,
        18,
    );
    let cells = [
        (user.log_count, "logs"),
        (user.trigs_logged, "trigs"),
        (user.photo_count, "photos"),
    ];
    for (i, (n, label)) in cells.into_iter().enumerate() {
        let x = 10.0 + 103.0 * i as f32;
        canvas.rect(x, 32.0, 94.0, 54.0, CELL_BG);
        let mid = x as i32 + 47;
        canvas.text(
            &n.to_string(),
            (mid, 38),
            &FONT_10X20,
            (255, 255, 255),
            Alignment::Center,
            9,
        );
        canvas.text(label, (mid, 66), &FONT_6X10, PALE, Alignment::Center, 12);
    }
    canvas.png()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: i64, lat: f64, lon: f64, logs: u64, condition: Option<&str>) -> MapPoint {
        MapPoint {
            id,
            lat,
            lon,
            logs,
            condition: condition.map(str::to_owned),
        }
    }

    fn size(png: &[u8]) -> (u32, u32) {
        let p = Pixmap::decode_png(png).expect("a PNG");
        (p.width(), p.height())
    }

    #[test]
    fn distance_is_symmetric_to_the_bit() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..10_000 {
            let a = (50.0 + rng.f64() * 8.5, -6.0 + rng.f64() * 7.5);
            let b = (50.0 + rng.f64() * 8.5, -6.0 + rng.f64() * 7.5);
            assert_eq!(
                distance_km(a, b).to_bits(),
                distance_km(b, a).to_bits(),
                "{a:?} {b:?}"
            );
        }
        // One degree of latitude is about 111 km; one of longitude at 60° about half that.
        assert!((distance_km((54.0, 0.0), (55.0, 0.0)) - 111.2).abs() < 0.1);
        assert!((distance_km((60.0, 0.0), (60.0, 1.0)) - 55.6).abs() < 0.1);
    }

    #[test]
    fn images_are_deterministic_pngs_of_their_size() {
        let centre = point(1, 54.0, -2.0, 3, Some("Good"));
        let map = TrigMap {
            centre: centre.clone(),
            waypoint: "TP0001".into(),
            name: "Black Fell".into(),
            nearby: vec![
                centre,
                point(2, 54.1, -2.1, 0, None),
                point(3, 53.9, -1.8, 1, Some("Missing")),
            ],
        };
        let a = trig_map(&map).unwrap();
        assert_eq!(a, trig_map(&map).unwrap(), "same data, same bytes");
        assert_eq!(size(&a), TRIG_MAP_SIZE);
        // A new log changes the picture.
        let mut more = map.clone();
        more.centre.logs = 4;
        more.nearby[0].logs = 4;
        assert_ne!(trig_map(&more).unwrap(), a);
        // So does a neighbour's first log.
        let mut logged = map;
        logged.nearby[1].logs = 1;
        logged.nearby[1].condition = Some("Good".into());
        assert_ne!(trig_map(&logged).unwrap(), a);

        let user = UserMap {
            user_id: 3,
            name: "redfell3".into(),
            trigs: vec![point(1, 54.0, -2.0, 2, Some("Good"))],
        };
        let u = user_map(&user).unwrap();
        assert_eq!(u, user_map(&user).unwrap());
        assert_eq!(size(&u), USER_MAP_SIZE);

        let who = User {
            id: 3,
            name: "redfell3".into(),
            joined: "2020-01-02".into(),
            log_count: 12,
            trigs_logged: 9,
            photo_count: 4,
        };
        let b = badge(&who).unwrap();
        assert_eq!(b, badge(&who).unwrap());
        assert_eq!(size(&b), BADGE_SIZE);
        let mut one_more = who;
        one_more.photo_count += 1;
        assert_ne!(badge(&one_more).unwrap(), b, "the counts are drawn");
    }
}
