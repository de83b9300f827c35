//! Charts as inline SVG, drawn on the server: no script, no network, readable by a screen reader
//! through their titles and the table printed beside each.

use std::fmt::Write;

/// One row of an interval chart: a rate and its 95 % interval.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalRow {
    /// The row's label (a release).
    pub label: String,
    /// The rate, 0 to 1.
    pub rate: f64,
    /// The interval, 0 to 1.
    pub low: f64,
    /// The interval, 0 to 1.
    pub high: f64,
    /// Drawn in the accent colour (the candidate).
    pub accent: bool,
}

const WIDTH: f64 = 560.0;
const LABEL: f64 = 110.0;
const ROW: f64 = 28.0;
const AXIS: f64 = 22.0;

/// Escapes text for SVG.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A percentage with the precision a rate of that size needs.
pub fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if p == 0.0 || p >= 10.0 {
        format!("{p:.0} %")
    } else if p >= 1.0 {
        format!("{p:.1} %")
    } else {
        format!("{p:.2} %")
    }
}

/// A rounded-up axis end for rates up to `top`.
fn axis_end(top: f64) -> f64 {
    for end in [0.01, 0.02, 0.05, 0.1, 0.2, 0.5] {
        if top <= end {
            return end;
        }
    }
    1.0
}

/// Rates with their intervals as dots and whiskers on one axis, with an optional reference line
/// (stable's rate plus the ramp's margin, say) labelled `reference.1`.
pub fn intervals(title: &str, rows: &[IntervalRow], reference: Option<(f64, &str)>) -> String {
    let top = rows
        .iter()
        .map(|r| r.high.max(r.rate))
        .chain(reference.map(|r| r.0))
        .fold(0.0_f64, f64::max);
    let end = axis_end(top);
    let plot = WIDTH - LABEL - 20.0;
    let x = |v: f64| LABEL + (v.clamp(0.0, end) / end) * plot;
    let height = rows.len() as f64 * ROW + AXIS + 8.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title)
    );
    for tick in 0..=4 {
        let v = end * f64::from(tick) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="0" x2="{x:.1}" y2="{y:.1}" stroke="#d0d4da" stroke-width="1"/><text x="{x:.1}" y="{t:.1}" font-size="11" text-anchor="middle" fill="#555">{p}</text>"##,
            x = x(v),
            y = rows.len() as f64 * ROW,
            t = rows.len() as f64 * ROW + 15.0,
            p = percent(v),
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = i as f64 * ROW + ROW / 2.0;
        let colour = if row.accent { "#b4461e" } else { "#1f5f99" };
        let _ = write!(
            svg,
            r##"<g><title>{label}: {rate} (95 % interval {low} to {high})</title><text x="{lx}" y="{ty:.1}" font-size="12" text-anchor="end" fill="#222">{label}</text><line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="3"/><circle cx="{cx:.1}" cy="{y:.1}" r="5" fill="{colour}"/></g>"##,
            label = esc(&row.label),
            rate = percent(row.rate),
            low = percent(row.low),
            high = percent(row.high),
            lx = LABEL - 8.0,
            ty = y + 4.0,
            x1 = x(row.low),
            x2 = x(row.high),
            cx = x(row.rate),
        );
    }
    if let Some((value, label)) = reference {
        let _ = write!(
            svg,
            r##"<g><title>{label}: {p}</title><line x1="{x:.1}" y1="0" x2="{x:.1}" y2="{y:.1}" stroke="#7a2" stroke-width="2" stroke-dasharray="4 3"/></g>"##,
            label = esc(label),
            p = percent(value),
            x = x(value),
            y = rows.len() as f64 * ROW,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Shares (0 to 1) as horizontal bars, one per label.
pub fn bars(title: &str, rows: &[(String, f64)]) -> String {
    let plot = WIDTH - LABEL - 70.0;
    let height = rows.len() as f64 * ROW + 4.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title)
    );
    for (i, (label, share)) in rows.iter().enumerate() {
        let y = i as f64 * ROW + 4.0;
        let w = share.clamp(0.0, 1.0) * plot;
        let _ = write!(
            svg,
            r##"<g><title>{label}: {p}</title><text x="{lx}" y="{ty:.1}" font-size="12" text-anchor="end" fill="#222">{label}</text><rect x="{LABEL}" y="{y:.1}" width="{plot:.1}" height="18" fill="#e8ebef"/><rect x="{LABEL}" y="{y:.1}" width="{w:.1}" height="18" fill="#1f5f99"/><text x="{px:.1}" y="{ty:.1}" font-size="12" fill="#222">{p}</text></g>"##,
            label = esc(label),
            p = percent(*share),
            lx = LABEL - 8.0,
            ty = y + 13.0,
            px = LABEL + plot + 6.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One series of a line chart: a label and a value per day.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The label (a release).
    pub label: String,
    /// `(day, value)`, days rising.
    pub points: Vec<(u64, u64)>,
}

const PALETTE: [&str; 6] = [
    "#1f5f99", "#b4461e", "#2e7d32", "#7b3fa0", "#8a6d00", "#00838f",
];

/// Values over days as step lines, one per series, from `first` to `last` day, with a legend.
pub fn lines(title: &str, series: &[Series], (first, last): (u64, u64)) -> String {
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = WIDTH - 60.0 - 20.0;
    let plot_h = 160.0;
    let legend = series.len() as f64 * 18.0;
    let height = plot_h + AXIS + 14.0 + legend;
    let span = last.saturating_sub(first).max(1) as f64;
    let x = |day: u64| 60.0 + (day.saturating_sub(first) as f64 / span) * plot_w;
    let y = |v: u64| 8.0 + plot_h - (v as f64 / top as f64) * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title)
    );
    for tick in 0..=4_u64 {
        let v = top * tick / 4;
        let _ = write!(
            svg,
            r##"<line x1="60" y1="{py:.1}" x2="{x2:.1}" y2="{py:.1}" stroke="#e3e6ea"/><text x="54" y="{ty:.1}" font-size="11" text-anchor="end" fill="#555">{v}</text>"##,
            py = y(v),
            ty = y(v) + 4.0,
            x2 = 60.0 + plot_w,
        );
    }
    for (day, anchor) in [(first, "start"), (last, "end")] {
        let _ = write!(
            svg,
            r##"<text x="{px:.1}" y="{ty:.1}" font-size="11" text-anchor="{anchor}" fill="#555">{date}</text>"##,
            px = x(day),
            ty = 8.0 + plot_h + 16.0,
            date = date_of(day),
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let mut path = String::new();
        let mut last_y = y(0);
        for (j, (day, value)) in s.points.iter().enumerate() {
            let (px, py) = (x(*day), y(*value));
            if j == 0 {
                let _ = write!(path, "M{px:.1},{last_y:.1} L{px:.1},{py:.1}");
            } else {
                let _ = write!(path, " L{px:.1},{last_y:.1} L{px:.1},{py:.1}");
            }
            last_y = py;
        }
        let _ = write!(path, " L{:.1},{last_y:.1}", x(last));
        let ly = plot_h + AXIS + 18.0 + i as f64 * 18.0;
        let total = s.points.last().map_or(0, |p| p.1);
        let _ = write!(
            svg,
            r##"<g><title>{label}: {total} devices by {date}</title><path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/><rect x="60" y="{ry:.1}" width="12" height="12" fill="{colour}"/><text x="78" y="{ty:.1}" font-size="12" fill="#222">{label} ({total})</text></g>"##,
            label = esc(&s.label),
            date = date_of(last),
            ry = ly - 10.0,
            ty = ly,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A day number (days since the Unix epoch) as a date.
pub fn date_of(day: u64) -> String {
    let text = manifests::Timestamp::from_unix_secs(day * 86_400).to_string();
    text.get(..10).unwrap_or(&text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_place_dots_and_whiskers_on_a_rounded_axis() {
        let rows = [
            IntervalRow {
                label: "1.0.0".into(),
                rate: 0.005,
                low: 0.001,
                high: 0.018,
                accent: false,
            },
            IntervalRow {
                label: "1.1.0 <b>".into(),
                rate: 0.025,
                low: 0.01,
                high: 0.057,
                accent: true,
            },
        ];
        let svg = intervals("Failed boots", &rows, Some((0.065, "stable + margin")));
        // 0.065 rounds the axis up to 10 %: the candidate's dot sits at a quarter of the plot.
        assert!(svg.contains(r##"<circle cx="217.5" cy="42.0" r="5" fill="#b4461e"/>"##));
        assert!(svg.contains(">10 %</text>"));
        assert!(svg.contains("1.1.0 &lt;b&gt;"), "labels are escaped");
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("stable + margin: 6.5 %"));
    }

    #[test]
    fn bars_are_as_long_as_their_share() {
        let svg = bars("Opens", &[("under 1 s".into(), 0.5)]);
        assert!(svg.contains(r##"width="190.0" height="18" fill="#1f5f99""##));
        assert!(svg.contains(">50 %</text>"));
    }

    #[test]
    fn lines_step_up_on_the_days_devices_arrive() {
        let series = [Series {
            label: "1.1.0".into(),
            points: vec![(20_000, 10), (20_002, 40)],
        }];
        let svg = lines("Adoption", &series, (20_000, 20_004));
        // Up to 10 on the first day, flat until the third, up to 40, flat to the end.
        assert!(
            svg.contains(r#"d="M60.0,168.0 L60.0,128.0 L300.0,128.0 L300.0,8.0 L540.0,8.0""#),
            "{svg}"
        );
        assert!(svg.contains(">2024-10-04</text>"));
        assert!(svg.contains("1.1.0: 40 devices by 2024-10-08"));
    }

    #[test]
    fn percentages_keep_two_significant_figures() {
        assert_eq!(percent(0.0), "0 %");
        assert_eq!(percent(0.00123), "0.12 %");
        assert_eq!(percent(0.0456), "4.6 %");
        assert_eq!(percent(0.5), "50 %");
    }
}
