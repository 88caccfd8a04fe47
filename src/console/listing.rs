//! A list page's skeleton, written once: the filter form, the table, and the link to the next
//! page, which keeps the filters; and reading a page's query (a blank filter filters nothing,
//! a cursor that does not decode starts at the first page).

use maud::{html, Markup};

use super::layout::{encode, table};
use crate::store::Cursor;

/// One filter of a list.
pub enum Filter {
    /// A text box.
    Text {
        name: &'static str,
        label: &'static str,
        value: Option<String>,
    },
    /// One of `options`, or any.
    Choice {
        name: &'static str,
        label: &'static str,
        options: Vec<&'static str>,
        chosen: Option<&'static str>,
    },
}

impl Filter {
    fn name(&self) -> &'static str {
        match self {
            Filter::Text { name, .. } | Filter::Choice { name, .. } => name,
        }
    }

    fn value(&self) -> Option<String> {
        match self {
            Filter::Text { value, .. } => value.clone(),
            Filter::Choice { chosen, .. } => chosen.map(str::to_owned),
        }
    }

    fn field(&self) -> Markup {
        match self {
            Filter::Text { name, label, value } => html! {
                div {
                    label for=(name) { (label) }
                    input id=(name) name=(name) value=(value.clone().unwrap_or_default());
                }
            },
            Filter::Choice {
                name,
                label,
                options,
                chosen,
            } => html! {
                div {
                    label for=(name) { (label) }
                    select id=(name) name=(name) {
                        option value="" { "any" }
                        @for option in options {
                            option value=(option) selected[*chosen == Some(*option)] { (option) }
                        }
                    }
                }
            },
        }
    }
}

/// A page of a list.
pub struct Listing<'a> {
    /// The page's own path, which the form and the next link go to.
    pub path: &'static str,
    pub filters: Vec<Filter>,
    pub columns: &'a [&'a str],
    pub rows: Vec<Vec<Markup>>,
    pub next: Option<Cursor>,
}

impl Listing<'_> {
    pub fn markup(self) -> Markup {
        html! {
            @if !self.filters.is_empty() {
                form method="get" action=(self.path) class="filters" {
                    @for filter in &self.filters { (filter.field()) }
                    div { button type="submit" { "Filter" } }
                }
            }
            (table(self.columns, self.rows))
            @if let Some(next) = self.next {
                p { a href=(next_link(self.path, &self.filters, next)) rel="next" { "Next page" } }
            }
        }
    }
}

/// The next page's address: the filters that are set, then the cursor.
fn next_link(path: &str, filters: &[Filter], next: Cursor) -> String {
    let mut query: Vec<String> = filters
        .iter()
        .filter_map(|filter| Some(format!("{}={}", filter.name(), encode(&filter.value()?))))
        .collect();
    query.push(format!("cursor={}", next.encode()));
    format!("{path}?{}", query.join("&"))
}

/// A text filter as given: a blank one (or one no stored text can equal) filters nothing.
pub fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty() && !v.contains('\0'))
        .map(str::to_owned)
}

/// The page a cursor names; the first page when there is none or it does not decode.
pub fn cursor(text: &Option<String>) -> Option<Cursor> {
    text.as_deref().and_then(|text| Cursor::decode(text).ok())
}
