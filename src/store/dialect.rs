//! The few spellings that differ between the backends, so that the statements of the store's
//! table modules (the queue, the outbox, retention, quarantine, subscriptions, reads) are
//! written once. Statements over many rows take them as one JSON array parameter.

#[derive(Debug, Clone, Copy)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn is_postgres(self) -> bool {
        matches!(self, Dialect::Postgres)
    }

    /// A new UUID for each row, laid out as a UUIDv7 (the time in milliseconds first, then
    /// random bits), as `Uuid::now_v7` makes them in Rust: rows made together land on the
    /// last page of the id's index instead of a random page each.
    pub fn new_uuid(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "unhex(printf('%012x%04x%04x%012x', CAST(unixepoch('subsec') * 1000 AS INTEGER), \
                              28672 + (random() & 4095), 32768 + (random() & 16383), \
                              random() & 281474976710655))"
            }
            Dialect::Postgres => {
                "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) \
                   placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) \
                                                     * 1000)::int8) FROM 3) FROM 1 FOR 6), \
                   52, 1), 53, 1), 'hex')::uuid"
            }
        }
    }

    /// The elements of the JSON array `$n`, each as `value`.
    pub fn json_rows(self, n: u8) -> String {
        match self {
            Dialect::Sqlite => format!("json_each(${n})"),
            Dialect::Postgres => format!("jsonb_array_elements(${n}::jsonb) AS r(value)"),
        }
    }

    /// `column` is one of the UUIDs of the JSON array `$n` (each written as 32 hex digits).
    /// On PostgreSQL an `= ANY` of an array, which the planner answers by probing the
    /// column's index; a join with the array's elements, which it guesses to be 100 whatever
    /// their number, would have it scan the whole table once that holds a few thousand rows.
    pub fn in_json_uuids(self, column: &str, n: u8) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT unhex(value) FROM json_each(${n}))"),
            Dialect::Postgres => format!(
                "{column} = ANY(ARRAY(SELECT value::uuid \
                                      FROM jsonb_array_elements_text(${n}::jsonb) AS v(value)))"
            ),
        }
    }

    /// What an `UPDATE … FROM` the [`Dialect::json_rows`] of `$n` needs beside its join on
    /// `column` = the UUID at index `field` of each row, so that each row is visited once:
    /// on PostgreSQL the UUIDs again as a list (see [`Dialect::in_json_uuids`]); on SQLite
    /// nothing, since there a list makes it search the array once for every row it finds.
    pub fn probe_json_rows(self, column: &str, n: u8, field: u8) -> String {
        match self {
            Dialect::Sqlite => String::new(),
            Dialect::Postgres => format!(
                "AND {column} = ANY(ARRAY(SELECT (value ->> {field})::uuid \
                                          FROM jsonb_array_elements(${n}::jsonb) AS v(value)))"
            ),
        }
    }

    /// `column` is one of the texts at index `field` of the rows of the JSON array `$n` (as
    /// [`Dialect::in_json_uuids`]).
    pub fn in_json_field(self, column: &str, n: u8, field: u8) -> String {
        match self {
            Dialect::Sqlite => {
                format!("{column} IN (SELECT value ->> {field} FROM json_each(${n}))")
            }
            Dialect::Postgres => format!(
                "{column} = ANY(ARRAY(SELECT value ->> {field} \
                                      FROM jsonb_array_elements(${n}::jsonb) AS v(value)))"
            ),
        }
    }

    /// The strings of the JSON array `$n`, as a list.
    pub fn json_texts(self, n: u8) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each(${n})"),
            Dialect::Postgres => {
                format!("SELECT value FROM jsonb_array_elements_text(${n}::jsonb) AS v(value)")
            }
        }
    }

    /// `column` is one of the integers of the JSON array `$n` (as [`Dialect::in_json_uuids`]).
    pub fn in_json_bigints(self, column: &str, n: u8) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(${n}))"),
            Dialect::Postgres => format!(
                "{column} = ANY(ARRAY(SELECT value::bigint \
                                      FROM jsonb_array_elements_text(${n}::jsonb) AS v(value)))"
            ),
        }
    }

    /// A UUID written as 32 hex digits.
    pub fn uuid(self, text: &str) -> String {
        match self {
            Dialect::Sqlite => format!("unhex({text})"),
            Dialect::Postgres => format!("({text})::uuid"),
        }
    }

    pub fn time(self, text: &str) -> String {
        match self {
            Dialect::Sqlite => text.to_owned(),
            Dialect::Postgres => format!("({text})::timestamptz"),
        }
    }

    pub fn cast(self, text: &str, kind: &str) -> String {
        match self {
            Dialect::Sqlite => text.to_owned(),
            Dialect::Postgres => format!("({text})::{kind}"),
        }
    }

    /// The minute of a time column, as text `YYYY-MM-DDTHH:MM` (UTC).
    pub fn minute(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("substr({column}, 1, 16)"),
            Dialect::Postgres => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI')")
            }
        }
    }

    /// Reads a table along `index` on SQLite (`INDEXED BY`, which fails the statement if the
    /// index cannot serve it): a planner without statistics can pick an index that reads far
    /// more. PostgreSQL plans from its statistics.
    pub fn indexed_by(self, index: &str) -> String {
        match self {
            Dialect::Sqlite => format!("INDEXED BY {index}"),
            Dialect::Postgres => String::new(),
        }
    }

    /// Locks the rows a `SELECT` reads until the transaction ends, so that writers of several
    /// tables take them in one order (SQLite has one writer at a time).
    pub fn lock_rows(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR NO KEY UPDATE",
        }
    }

    /// Rows claimed by one instance are skipped by the others (SQLite has one dispatcher).
    pub fn skip_locked(self, table: &str) -> String {
        match self {
            Dialect::Sqlite => String::new(),
            Dialect::Postgres => format!("FOR UPDATE OF {table} SKIP LOCKED"),
        }
    }
}
