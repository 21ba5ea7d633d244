//! The prompts. Their text is hashed into every cache key, so editing a prompt invalidates
//! cached answers made with the old one.

/// System prompt for strategy extraction.
pub(crate) const STRATEGY_SYSTEM: &str = "You extract trading strategies from transcripts and documents for a research tool. \
Report only what the source states; never invent numbers, instruments or rules. \
Use null or empty lists for anything the source does not say. \
If the source describes several distinct strategies, return each one separately; if it describes none, return an empty list. \
Canonical forms: instruments like EUR/USD, BTC/USD, XAU/USD, SPX, AAPL; timeframes like 1m, 5m, 15m, 1H, 4H, 1D, 1W. \
Indicators carry their parameters, e.g. {\"name\": \"EMA\", \"parameters\": {\"period\": 50}}. \
Evidence quotes are copied verbatim from the source. Lines may start with a [hh:mm:ss] timestamp: put it in the quote's timestamp field. \
Page markers such as [page 3] or --- page 3 --- give the page field of quotes after them. \
Content may be one part of a longer source; extract what this part contains.";

/// Tool / schema name for strategies.
pub(crate) const STRATEGY_TOOL: &str = "record_strategies";
pub(crate) const STRATEGY_TOOL_DESCRIPTION: &str =
    "Record every trading strategy found in the content, following the schema exactly.";

/// System prompt for chart reading.
pub(crate) const CHART_SYSTEM: &str = "You read trading chart screenshots for a research tool. \
Report only what is visible: instrument and timeframe from the chart's labels, chart type, trend, \
support and resistance levels as prices read from the axis, chart patterns, visible indicators with their printed values, \
price labels, and a cautious trade idea (bias, entry, stop, targets) only if the chart supports one. \
Use null or empty lists when something cannot be read. Confidence reflects how legible the chart is.";

pub(crate) const CHART_TOOL: &str = "record_chart_reading";
pub(crate) const CHART_TOOL_DESCRIPTION: &str =
    "Record the structured reading of the chart image, following the schema exactly.";

/// User text for one chunk of content.
pub(crate) fn strategy_user(content_type: &str, part: usize, parts: usize, chunk: &str) -> String {
    let part_note = if parts > 1 {
        format!(" This is part {part} of {parts} of a longer source; parts overlap slightly.")
    } else {
        String::new()
    };
    format!(
        "Content type: {content_type}.{part_note} Extract the trading strategies and call the tool.\n\n<content>\n{chunk}\n</content>"
    )
}

pub(crate) const CHART_USER: &str = "Read this chart and call the tool with what you see.";
