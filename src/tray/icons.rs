//! The panel's own icons: a cloud with a coloured badge per state, drawn to read on light
//! and dark panels alike (a light cloud with a dark outline). Written as SVG files to a
//! folder the item names as its `IconThemePath`.

use std::path::{Path, PathBuf};

use super::view::Look;

const CLOUD: &str = "M14 46h30a11 11 0 0 0 1.5-21.9A15 15 0 0 0 17 20.5 12.8 12.8 0 0 0 14 46z";

/// The badge of a look: its colour and its white glyph (SVG elements; `STROKE` stands for
/// the glyph's stroke attributes).
fn badge(look: Look) -> Option<(&'static str, &'static str)> {
    const CHECK: &str = r#"<path d="M40 48l5 5 9-10" STROKE/>"#;
    const ARROWS: &str = r#"<path d="M43 53V41m0 0-3.5 3.5M43 41l3.5 3.5M51 41v12m0 0-3.5-3.5M51 53l3.5-3.5" STROKE/>"#;
    const PAUSE: &str = r#"<path d="M43 41v12m8-12v12" STROKE/>"#;
    const CROSS: &str = r#"<path d="M42 42l10 10m0-10-10 10" STROKE/>"#;
    const BANG: &str =
        r##"<path d="M47 40v8" STROKE/><circle cx="47" cy="54" r="2.4" fill="#fff"/>"##;
    Some(match look {
        Look::Idle => return None,
        Look::Synced => ("#2e9d48", CHECK),
        Look::Transferring => ("#2f6fd6", ARROWS),
        Look::Paused => ("#6b7280", PAUSE),
        Look::Offline => ("#6b7280", CROSS),
        Look::Attention => ("#e0791b", BANG),
        Look::AuthRequired => ("#d12d2d", BANG),
    })
}

/// The SVG of a look's icon.
pub fn svg(look: Look) -> String {
    let stroke = r##"fill="none" stroke="#fff" stroke-width="3.5" stroke-linecap="round" stroke-linejoin="round""##;
    let cloud_fill = if look == Look::Idle {
        "#c7cbd1"
    } else {
        "#eef1f5"
    };
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><path d="{CLOUD}" fill="{cloud_fill}" stroke="#30363d" stroke-width="3" stroke-linejoin="round"/>"##
    );
    if let Some((colour, glyph)) = badge(look) {
        s.push_str(&format!(
            r##"<circle cx="47" cy="47" r="14" fill="{colour}" stroke="#fff" stroke-width="2.5"/>{}"##,
            glyph.replace("STROKE", stroke)
        ));
    }
    s.push_str("</svg>\n");
    s
}

/// Every look.
pub const LOOKS: [Look; 7] = [
    Look::Idle,
    Look::Synced,
    Look::Transferring,
    Look::Paused,
    Look::Offline,
    Look::Attention,
    Look::AuthRequired,
];

/// Writes the icons to `dir` (flat, and as `hicolor/scalable/status/` for hosts that look
/// for a theme layout) and returns the folder to name as `IconThemePath`.
pub fn install(dir: &Path) -> std::io::Result<PathBuf> {
    let themed = dir.join("hicolor").join("scalable").join("status");
    std::fs::create_dir_all(&themed)?;
    for look in LOOKS {
        let file = format!("{}.svg", look.icon_name());
        let svg = svg(look);
        std::fs::write(dir.join(&file), &svg)?;
        std::fs::write(themed.join(&file), &svg)?;
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_look_has_its_own_icon() {
        let names: std::collections::BTreeSet<_> = LOOKS.iter().map(|l| l.icon_name()).collect();
        assert_eq!(names.len(), LOOKS.len());
        let svgs: std::collections::BTreeSet<_> = LOOKS.iter().map(|l| svg(*l)).collect();
        assert_eq!(svgs.len(), LOOKS.len());
        assert!(svg(Look::Synced).starts_with("<svg") && !svg(Look::Synced).contains("STROKE"));
    }
}
