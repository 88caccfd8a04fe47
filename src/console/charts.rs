//! Bar charts of the last hour, minute by minute, drawn on the server as inline SVG (colours as
//! attributes: the page's policy allows no inline style). The words (time axis, peak, a legend
//! of totals) are HTML under the bars, so that they stay readable however narrow the chart.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};

/// Minutes a chart spans.
pub const MINUTES: usize = 60;
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 160.0;

/// One stacked series of a chart.
pub struct Series {
    pub label: &'static str,
    pub color: &'static str,
    /// A count per minute, oldest first.
    pub counts: Vec<i64>,
}

/// The minute (`YYYY-MM-DDTHH:MM`) of each of the last [`MINUTES`] minutes up to `now`, oldest
/// first, to put counts keyed by minute in their places.
pub fn minutes(now: DateTime<Utc>) -> Vec<String> {
    (0..MINUTES)
        .rev()
        .map(|ago| {
            (now - Duration::minutes(ago as i64))
                .format("%Y-%m-%dT%H:%M")
                .to_string()
        })
        .collect()
}

/// The counts of `key` per minute, in the order of `minutes`.
pub fn per_minute<K: Eq + std::hash::Hash>(
    minutes: &[String],
    rows: &[(String, K, i64)],
    key: &K,
) -> Vec<i64> {
    let by_minute: HashMap<&str, i64> = rows
        .iter()
        .filter(|(_, row_key, _)| row_key == key)
        .map(|(minute, _, count)| (minute.as_str(), *count))
        .collect();
    minutes
        .iter()
        .map(|minute| by_minute.get(minute.as_str()).copied().unwrap_or_default())
        .collect()
}

/// A stacked bar chart of `series` over the last hour.
pub fn chart(title: &str, series: &[Series]) -> Markup {
    let totals: Vec<i64> = (0..MINUTES)
        .map(|minute| {
            series
                .iter()
                .map(|s| s.counts.get(minute).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let top = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bar = WIDTH / MINUTES as f64;
    let summary: Vec<String> = series
        .iter()
        .map(|s| format!("{} {}", s.counts.iter().sum::<i64>(), s.label))
        .collect();
    html! {
        figure class="chart" {
            figcaption { h2 { (title) } }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } preserveAspectRatio="none" role="img"
                aria-label={ (title) ", last 60 minutes: " (summary.join(", ")) } {
                @for minute in 0..MINUTES {
                    @let mut base = HEIGHT;
                    @for s in series {
                        @let count = s.counts.get(minute).copied().unwrap_or(0);
                        @if count > 0 {
                            @let height = count as f64 / top * HEIGHT;
                            @let y = { base -= height; base };
                            rect x=(format!("{:.1}", minute as f64 * bar + 1.0)) y=(format!("{y:.1}"))
                                 width=(format!("{:.1}", bar - 2.0)) height=(format!("{height:.1}"))
                                 fill=(s.color) {}
                        }
                    }
                }
                line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) stroke="#4d5560" stroke-width="2" {}
            }
            div class="axis" aria-hidden="true" {
                span { "60 min ago" } span { "peak " (top as i64) " / min" } span { "now" }
            }
            ul class="legend" {
                @for s in series {
                    li {
                        svg class="swatch" aria-hidden="true" viewBox="0 0 10 10" width="12" height="12" {
                            rect width="10" height="10" fill=(s.color) {}
                        }
                        (s.label) ": " (s.counts.iter().sum::<i64>())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_minutes_and_the_chart_says_its_totals() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:30:20Z")
            .unwrap()
            .with_timezone(&Utc);
        let minutes = minutes(now);
        assert_eq!(minutes.first().unwrap(), "2026-12-02T09:31");
        assert_eq!(minutes.last().unwrap(), "2026-12-02T10:30");
        let rows = vec![
            ("2026-12-02T10:30".to_owned(), "processed".to_owned(), 3),
            ("2026-12-02T10:29".to_owned(), "processed".to_owned(), 2),
            ("2026-12-02T10:30".to_owned(), "duplicate".to_owned(), 1),
            ("2026-12-02T08:00".to_owned(), "processed".to_owned(), 9),
        ];
        let processed = per_minute(&minutes, &rows, &"processed".to_owned());
        assert_eq!(processed[MINUTES - 1], 3);
        assert_eq!(processed[MINUTES - 2], 2);
        assert_eq!(
            processed.iter().sum::<i64>(),
            5,
            "an older minute is left out"
        );
        let drawn = chart(
            "Events",
            &[Series {
                label: "processed",
                color: "#0b57a4",
                counts: processed,
            }],
        )
        .into_string();
        assert!(drawn.contains("processed: 5"), "{drawn}");
        assert_eq!(
            drawn.matches("<rect").count(),
            2 + 1,
            "two bars and a swatch"
        );
    }
}
