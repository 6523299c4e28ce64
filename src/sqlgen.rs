//! SQL text helpers for D1's limits: at most 100 bound parameters per
//! statement and about 2 MB per row, so multi-row inserts are packed.

pub const MAX_PARAMS: usize = 100;
/// Bytes of bound values per statement; large values travel alone.
pub const MAX_STATEMENT_BYTES: usize = 1_500_000;

/// `(?, ?, ?), (?, ?, ?)` for `rows` rows of `cols` columns.
pub fn values_placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

/// Splits rows (given by their byte sizes) into consecutive groups that each
/// fit one statement: at most `MAX_PARAMS / cols` rows and, unless a single
/// row is larger, at most `MAX_STATEMENT_BYTES` bytes.
pub fn pack_rows(row_bytes: &[usize], cols: usize) -> Vec<std::ops::Range<usize>> {
    let max_rows = (MAX_PARAMS / cols.max(1)).max(1);
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &b) in row_bytes.iter().enumerate() {
        let full = i - start == max_rows || (i > start && bytes + b > MAX_STATEMENT_BYTES);
        if full {
            groups.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += b;
    }
    if start < row_bytes.len() {
        groups.push(start..row_bytes.len());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn placeholders() {
        assert_eq!(values_placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
    }

    #[test]
    fn packs_by_params_and_bytes() {
        assert_eq!(pack_rows(&[1; 25], 10), vec![0..10, 10..20, 20..25]);
        assert_eq!(
            pack_rows(&[1_000_000, 10, 1_000_000, 2_000_000, 5], 4),
            vec![0..2, 2..3, 3..4, 4..5]
        );
        assert!(pack_rows(&[], 4).is_empty());
    }

    proptest! {
        #[test]
        fn packing_covers_every_row_once(rows in proptest::collection::vec(0usize..2_000_000, 0..60), cols in 1usize..20) {
            let groups = pack_rows(&rows, cols);
            let mut next = 0;
            for g in &groups {
                prop_assert_eq!(g.start, next);
                prop_assert!(!g.is_empty());
                prop_assert!(g.len() * cols <= MAX_PARAMS || g.len() == 1);
                let bytes: usize = rows[g.clone()].iter().sum();
                prop_assert!(bytes <= MAX_STATEMENT_BYTES || g.len() == 1);
                next = g.end;
            }
            prop_assert_eq!(next, rows.len());
        }
    }
}
