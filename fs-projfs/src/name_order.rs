//! File-name comparison as ProjFS does it (`PrjFileNameCompare`), in plain Rust.
//!
//! ProjFS requires directory entries in the order of `PrjFileNameCompare`, which is the file
//! system's case-insensitive comparison (`RtlCompareUnicodeString` with `CaseInSensitive`):
//!
//! 1. Names are compared as UTF-16 code units, not as Unicode scalar values: a character
//!    outside the Basic Multilingual Plane is a surrogate pair (0xD800–0xDFFF) and so sorts
//!    *before* U+E000–U+FFFF.
//! 2. Each code unit is upcased on its own with the simple, one-to-one uppercase mapping
//!    (`RtlUpcaseUnicodeChar`): `é` and `É` are equal, `ß` stays `ß` (its uppercase is two
//!    letters), surrogates are never upcased. Windows never maps a non-ASCII letter onto
//!    ASCII here, so `ı` (U+0131, dotless i) and `ſ` (U+017F, long s) stay themselves.
//! 3. The first differing upcased unit decides; when one name is a prefix of the other the
//!    shorter sorts first. Equal means "the same name" to Windows.
//!
//! Known divergence: Rust's uppercase tables follow the Unicode version of the compiler,
//! Windows' those of its own release (NTFS volumes carry the table of the Windows that
//! formatted them). For characters added to Unicode recently the two can differ; on
//! Windows the unit tests in `provider` cross-check this module against the real function.

use std::cmp::Ordering;

/// The upcased form of one UTF-16 code unit, per the rules in the module documentation.
pub fn upcase_unit(unit: u16) -> u16 {
    if (0xD800..=0xDFFF).contains(&unit) {
        return unit;
    }
    if unit < 0x80 {
        return (unit as u8).to_ascii_uppercase() as u16;
    }
    if unit == 0x0131 || unit == 0x017F {
        return unit;
    }
    let Some(c) = char::from_u32(unit as u32) else {
        return unit;
    };
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) if (u as u32) <= 0xFFFF => u as u32 as u16,
        _ => unit,
    }
}

/// The key `PrjFileNameCompare` effectively sorts by: the upcased UTF-16 code units.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey(Vec<u16>);

impl SortKey {
    /// The key of `name`.
    pub fn new(name: &str) -> SortKey {
        SortKey(name.encode_utf16().map(upcase_unit).collect())
    }
}

/// Compares two names like `PrjFileNameCompare`.
pub fn compare(a: &str, b: &str) -> Ordering {
    let mut x = a.encode_utf16().map(upcase_unit);
    let mut y = b.encode_utf16().map(upcase_unit);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p != q => return p.cmp(&q),
            _ => {}
        }
    }
}

/// Whether Windows sees `a` and `b` as the same name.
pub fn same_name(a: &str, b: &str) -> bool {
    compare(a, b) == Ordering::Equal
}

/// Sorts `items` into ProjFS order by the name `name_of` gives, then drops every item whose
/// name equals (case-insensitively) an earlier one, keeping of each such group the name
/// that is first in plain code-unit order, so the choice never depends on server order.
/// Returns the names dropped.
pub fn sort_unique<T>(items: &mut Vec<T>, name_of: impl Fn(&T) -> &str) -> Vec<String> {
    items.sort_by_cached_key(|item| {
        let name = name_of(item);
        (
            SortKey::new(name),
            name.encode_utf16().collect::<Vec<u16>>(),
        )
    });
    let mut dropped = Vec::new();
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        match kept.last() {
            Some(last) if same_name(name_of(last), name_of(&item)) => {
                dropped.push(name_of(&item).to_string());
            }
            _ => kept.push(item),
        }
    }
    *items = kept;
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_case_insensitive_and_prefix_first() {
        assert_eq!(compare("abc", "ABC"), Ordering::Equal);
        assert_eq!(compare("a", "ab"), Ordering::Less);
        assert_eq!(compare("B", "a"), Ordering::Greater);
        // '_' (0x5F) sorts after the upcased letters (0x41-0x5A), not before 'a' as bytes.
        assert_eq!(compare("a_b", "aZb"), Ordering::Greater);
        assert_eq!(compare("A_b", "Azb"), Ordering::Greater);
        assert_eq!(compare("", "a"), Ordering::Less);
        assert!(same_name("Readme.MD", "README.md"));
    }

    #[test]
    fn non_ascii_letters_fold_one_to_one() {
        assert!(same_name("été", "ÉTÉ"));
        assert!(same_name("Ωmega", "ωMEGA"));
        assert!(same_name("straße", "STRAßE"));
        assert!(!same_name("straße", "STRASSE"), "ß is not folded to SS");
        assert!(same_name("ÿ", "Ÿ"), "U+00FF upcases to U+0178");
        assert!(same_name("я", "Я"));
        assert!(!same_name("ı", "I"), "dotless i stays itself");
        assert!(!same_name("ſ", "S"), "long s stays itself");
        assert_eq!(
            upcase_unit('µ' as u16),
            0x039C,
            "micro sign upcases to Greek MU"
        );
    }

    #[test]
    fn non_ascii_order_follows_upcased_code_units() {
        // É (0xC9) > Z (0x5A): accented letters sort after all ASCII letters.
        assert_eq!(compare("éa", "zz"), Ordering::Greater);
        // Upcasing happens before comparing: 'é' (0xE9) → 'É' (0xC9) < 'Ø' (0xD8).
        assert_eq!(compare("é", "Ø"), Ordering::Less);
        assert_eq!(compare("é", "ø"), Ordering::Less);
        // Cyrillic after Greek after Latin-1.
        assert_eq!(compare("ж", "λ"), Ordering::Greater);
        assert_eq!(compare("λ", "ü"), Ordering::Greater);
        // A surrogate pair (emoji) sorts before U+FF21 (full-width A), unlike code points.
        assert_eq!(compare("😀", "Ａ"), Ordering::Less);
        assert!('😀' > 'Ａ');
    }

    #[test]
    fn sort_unique_orders_and_drops_case_duplicates() {
        let mut names: Vec<String> = [
            "zeta", "Émile", "alpha", "README", "readme", "Zeta", "émile", "_x", "b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let dropped = sort_unique(&mut names, |s| s.as_str());
        assert_eq!(names, ["alpha", "b", "README", "Zeta", "_x", "Émile"]);
        let mut dropped = dropped;
        dropped.sort();
        assert_eq!(dropped, ["readme", "zeta", "émile"]);
    }

    #[test]
    fn sort_key_agrees_with_compare() {
        let names = ["a", "B", "ab", "é", "Z", "_", "😀", "Ａ", "ß", "ss"];
        for a in names {
            for b in names {
                assert_eq!(
                    SortKey::new(a).cmp(&SortKey::new(b)),
                    compare(a, b),
                    "{a} vs {b}"
                );
            }
        }
    }
}
