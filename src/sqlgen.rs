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

/// Largest JSON text bound as one `json_each` parameter: well under D1's
/// 2 MB per value, and any number of rows in one statement.
pub const MAX_JSON_BYTES: usize = 1_000_000;

/// Splits rows (their JSON texts' sizes) into consecutive packs of at most
/// `max_bytes` once joined into one JSON array (`[`, `,` between, `]`). A
/// row larger than that alone gets a pack of its own.
pub fn pack_json(row_bytes: &[usize], max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut packs = Vec::new();
    let mut start = 0;
    let mut bytes = 1;
    for (i, &b) in row_bytes.iter().enumerate() {
        if i > start && bytes + b + 1 > max_bytes {
            packs.push(start..i);
            start = i;
            bytes = 1;
        }
        bytes += b + 1;
    }
    if start < row_bytes.len() {
        packs.push(start..row_bytes.len());
    }
    packs
}

/// `?1, value ->> 0, value ->> 1, ...`: the select list that inserts rows of
/// `cols` columns, the first bound as `?1`, the rest from a JSON array each.
pub fn json_select(cols: usize) -> String {
    let mut list = vec!["?1".to_string()];
    list.extend((0..cols.saturating_sub(1)).map(|i| format!("value ->> {i}")));
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_packs() {
        assert_eq!(pack_json(&[3, 3, 3], 9), vec![0..2, 2..3]);
        assert_eq!(pack_json(&[20, 1], 9), vec![0..1, 1..2]);
        assert!(pack_json(&[], 9).is_empty());
        assert_eq!(json_select(3), "?1, value ->> 0, value ->> 1");
    }

    proptest! {
        /// Every pack joined stays within the limit unless it is one row.
        #[test]
        fn json_packs_fit(rows in proptest::collection::vec(0usize..50, 0..40), max in 10usize..200) {
            let packs = pack_json(&rows, max);
            let mut next = 0;
            for p in &packs {
                prop_assert_eq!(p.start, next);
                next = p.end;
                let joined = 1 + rows[p.clone()].iter().map(|b| b + 1).sum::<usize>();
                prop_assert!(joined <= max || p.len() == 1);
            }
            prop_assert_eq!(next, rows.len());
        }
    }

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
