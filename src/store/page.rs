//! Keyset paging, the same for every list: a page of at most `limit` items older than the
//! cursor, and the cursor of the next page when there is one.

use super::{Cursor, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// The position to read before, as a statement's parameter.
    pub(super) fn before_seq(&self) -> Option<i64> {
        self.after.map(|cursor| cursor.before_seq)
    }

    /// The condition that keeps the rows before the cursor, whose position is `$n`.
    pub(super) fn before(&self, column: &str, n: u8) -> String {
        filter(self.after.is_some(), &format!("{column} < ${n}"), n)
    }

    /// How many rows to fetch: one more than the page, to learn whether another follows.
    pub(super) fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// `condition` when its filter is given, else `$n IS NULL` (the filter's parameter, bound as
/// NULL): each combination of filters is a statement of its own, planned along the index of
/// the filters it has. One statement of `($n IS NULL OR condition)` for all of them is planned
/// without them and reads past every row a filter turns away (SQLite always, PostgreSQL once
/// it keeps a generic plan).
pub(super) fn filter(given: bool, condition: &str, n: u8) -> String {
    if given {
        condition.to_owned()
    } else {
        format!("${n} IS NULL")
    }
}

/// Splits off the extra row fetched to learn whether another page follows.
pub(super) fn paginate<R>(mut rows: Vec<R>, limit: u32, seq: impl Fn(&R) -> i64) -> Page<R> {
    let limit = limit as usize;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|row| Cursor {
            before_seq: seq(row),
        })
    } else {
        None
    };
    Page { items: rows, next }
}

impl<R> Page<R> {
    pub(super) fn try_map<T>(
        self,
        f: impl FnMut(R) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            next: self.next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extra_row_becomes_the_next_cursor() {
        let full = paginate(vec![9, 8, 7], 2, |seq| *seq);
        assert_eq!(full.items, [9, 8]);
        assert_eq!(full.next, Some(Cursor { before_seq: 8 }));
        let last = paginate(vec![9, 8], 2, |seq| *seq);
        assert_eq!(last.next, None);
    }
}
