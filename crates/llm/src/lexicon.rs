//! Trading vocabulary for the offline `rules` provider: instruments, timeframes, indicators
//! and number words, as regexes over ASCII-lowercased text (byte offsets stay valid).

use std::sync::LazyLock;

use regex::Regex;

/// Number words a speaker uses for small numbers ("risk one percent", "four hour chart").
pub(crate) const NUM: &str = r"(?:\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|sixty|half a|a half|half)";

/// Parses a digit string or a number word.
pub(crate) fn number(word: &str) -> Option<f64> {
    let w = word.trim();
    if let Ok(n) = w.replace(',', "").parse::<f64>() {
        return Some(n);
    }
    Some(match w {
        "half" | "half a" | "a half" => 0.5,
        "one" => 1.0,
        "two" => 2.0,
        "three" => 3.0,
        "four" => 4.0,
        "five" => 5.0,
        "six" => 6.0,
        "seven" => 7.0,
        "eight" => 8.0,
        "nine" => 9.0,
        "ten" => 10.0,
        "eleven" => 11.0,
        "twelve" => 12.0,
        "fifteen" => 15.0,
        "twenty" => 20.0,
        "thirty" => 30.0,
        "forty" => 40.0,
        "fifty" => 50.0,
        "sixty" => 60.0,
        _ => return None,
    })
}

/// Formats 1.0 as "1", 0.5 as "0.5".
pub(crate) fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

const CCY: &str = "eur|usd|gbp|jpy|aud|nzd|cad|chf";

static PAIR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"\b({CCY})\s?[/-]?\s?({CCY})\b")).unwrap());

/// Named instruments: (pattern, canonical symbol, market).
static NAMED: LazyLock<Vec<(Regex, &'static str, &'static str)>> = LazyLock::new(|| {
    [
        (r"\beuro[ /-]?dollar\b|\bfiber\b", "EUR/USD", "forex"),
        (r"\bpound[ /-]?dollar\b|\bcable\b", "GBP/USD", "forex"),
        (r"\bdollar[ /-]?yen\b", "USD/JPY", "forex"),
        (r"\baussie(?:[ /-]?dollar)?\b", "AUD/USD", "forex"),
        (r"\bgold\b|\bxau\s?/?\s?usd\b", "XAU/USD", "commodities"),
        (r"\bsilver\b|\bxag\s?/?\s?usd\b", "XAG/USD", "commodities"),
        (
            r"\bcrude(?: oil)?\b|\bwti\b|\boil futures\b",
            "WTI",
            "commodities",
        ),
        (
            r"\bbitcoin\b|\bbtc(?:\s?/?\s?usdt?)?\b",
            "BTC/USD",
            "crypto",
        ),
        (
            r"\bethereum\b|\beth(?:\s?/?\s?usdt?)\b|\bether\b",
            "ETH/USD",
            "crypto",
        ),
        (r"\bsolana\b", "SOL/USD", "crypto"),
        (
            r"\bs&p(?: ?500)?\b|\bspx\b|\bes futures\b|\bspy\b",
            "SPX",
            "indices",
        ),
        (
            r"\bnasdaq(?: ?100)?\b|\bndx\b|\bnq\b|\bqqq\b",
            "NDX",
            "indices",
        ),
        (r"\bdow jones\b|\bthe dow\b|\bdjia\b", "DJI", "indices"),
        (r"\bdax\b", "DAX", "indices"),
        (r"\bapple\b|\baapl\b", "AAPL", "stocks"),
        (r"\btesla\b|\btsla\b", "TSLA", "stocks"),
        (r"\bnvidia\b|\bnvda\b", "NVDA", "stocks"),
        (r"\bmicrosoft\b|\bmsft\b", "MSFT", "stocks"),
        (r"\bamazon\b|\bamzn\b", "AMZN", "stocks"),
    ]
    .into_iter()
    .map(|(p, s, m)| (Regex::new(p).unwrap(), s, m))
    .collect()
});

/// An instrument found in the text, with where.
pub(crate) struct Found {
    pub value: String,
    pub extra: String,
    pub pos: usize,
}

/// Instruments in lowercased text: `(symbol, market, byte position)`, first mention first.
pub(crate) fn instruments(lower: &str) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for c in PAIR.captures_iter(lower) {
        if c[1] != c[2] {
            let sym = format!("{}/{}", c[1].to_uppercase(), c[2].to_uppercase());
            out.push(Found {
                value: sym,
                extra: "forex".into(),
                pos: c.get(0).map_or(0, |m| m.start()),
            });
        }
    }
    for (re, sym, market) in NAMED.iter() {
        if let Some(m) = re.find(lower) {
            out.push(Found {
                value: sym.to_string(),
                extra: market.to_string(),
                pos: m.start(),
            });
        }
    }
    out.sort_by_key(|f| f.pos);
    let mut seen = Vec::new();
    out.retain(|f| {
        let new = !seen.contains(&f.value);
        seen.push(f.value.clone());
        new
    });
    out
}

static TF_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"\b({NUM})[ -]?(minutes?|mins?|hours?|hrs?|hourly|days?|weeks?)\b(?:\s+\w+)?\s+(?:chart|charts|timeframe|time frame|candles?|candlesticks?|bars?|tf)\b"
    ))
    .unwrap()
});
static TF_NAMED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(daily|weekly|monthly|hourly|intraday)(?:\s+\w+)?\s+(?:chart|charts|timeframe|time frame|candles?|candlesticks?|bars?|close|closes|levels?|tf)\b").unwrap()
});
static TF_COMPACT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:(\d{1,3})\s?(m|min|h|hr|d|w)|(m|h|d|w)(\d{1,3}))\b").unwrap()
});
/// Compact forms safe in speech and notes: no space inside ("1h", "H4", "M15", "D1", "60m"), not a
/// money amount ("$15m") nor a count ("1m shares").
static TF_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^$\w.])(?:(\d{1,3})(m|h|d|w)|(m|h|d|w)(\d{1,3}))\b(\s+(?:shares|dollars|users|views|people|subscribers|followers|contracts|volume)\b)?").unwrap()
});
/// "On the daily, buy …": the timeframe named without a chart word.
static TF_BARE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\bon the (daily|weekly|monthly|hourly)\b(?:\s*[,.;:]|\s*$|\s+(?:i|we|you|and|buy|sell|look|price|wait))").unwrap()
});

/// One canonical label per timeframe: minutes as `15m`, whole hours as `1H`/`4H`, days `1D`,
/// weeks `1W` ("60-minute" and "H1" are both `1H`, "24 hour" is `1D`).
fn tf_label(n: f64, unit: &str) -> Option<String> {
    let n = n as u64;
    let minutes = n * match unit.chars().next()? {
        'm' => 1,
        'h' => 60,
        'd' => 1440,
        'w' => 10080,
        _ => return None,
    };
    if minutes == 0 || minutes > 4 * 10080 {
        return None;
    }
    Some(if minutes.is_multiple_of(10080) {
        format!("{}W", minutes / 10080)
    } else if minutes.is_multiple_of(1440) {
        format!("{}D", minutes / 1440)
    } else if minutes.is_multiple_of(60) {
        format!("{}H", minutes / 60)
    } else {
        format!("{minutes}m")
    })
}

/// Timeframes in lowercased text: `(label, position)`, in every common spelling (`1H`, `H1`,
/// `60m`, `60-minute`, `4-hour`, `4h`, `H4`, daily, `D1`, `1D`, weekly, `W1`, `15m`, `M15`), each
/// normalised to one label. Word forms need a chart word after them ("four hour chart", "daily
/// candles") so "two hours later" is not a timeframe. `compact` (chart OCR text) also accepts
/// `4 h` with a space and a bare "daily".
pub(crate) fn timeframes(lower: &str, compact: bool) -> Vec<Found> {
    let mut out = Vec::new();
    for c in TF_WORDS.captures_iter(lower) {
        let pos = c.get(0).map_or(0, |m| m.start());
        if let Some(n) = number(&c[1])
            && let Some(l) = tf_label(n, &c[2])
        {
            out.push(Found {
                value: l,
                extra: String::new(),
                pos,
            });
        }
    }
    let named = |w: &str| match w {
        "daily" => Some("1D"),
        "weekly" => Some("1W"),
        "monthly" => Some("1M"),
        "hourly" => Some("1H"),
        _ => None,
    };
    for c in TF_NAMED
        .captures_iter(lower)
        .chain(TF_BARE.captures_iter(lower))
    {
        let Some(l) = named(&c[1]) else { continue };
        out.push(Found {
            value: l.into(),
            extra: String::new(),
            pos: c.get(0).map_or(0, |m| m.start()),
        });
    }
    for c in TF_TOKEN.captures_iter(lower) {
        if c.get(5).is_some() {
            continue;
        }
        let (n, u) = match (c.get(1), c.get(2), c.get(3), c.get(4)) {
            (Some(n), Some(u), _, _) => (n.as_str(), u.as_str()),
            (_, _, Some(u), Some(n)) => (n.as_str(), u.as_str()),
            _ => continue,
        };
        if let Some(l) = number(n).and_then(|n| tf_label(n, u)) {
            out.push(Found {
                value: l,
                extra: String::new(),
                pos: c.get(0).map_or(0, |m| m.start()),
            });
        }
    }
    if compact {
        for c in TF_COMPACT.captures_iter(lower) {
            let (n, u) = match (c.get(1), c.get(2), c.get(3), c.get(4)) {
                (Some(n), Some(u), _, _) => (n.as_str(), u.as_str()),
                (_, _, Some(u), Some(n)) => (n.as_str(), u.as_str()),
                _ => continue,
            };
            if let Some(l) = number(n).and_then(|n| tf_label(n, u)) {
                out.push(Found {
                    value: l,
                    extra: String::new(),
                    pos: c.get(0).map_or(0, |m| m.start()),
                });
            }
        }
        for (word, l) in [("daily", "1D"), ("weekly", "1W"), ("monthly", "1M")] {
            if let Some(p) = lower.find(word) {
                out.push(Found {
                    value: l.into(),
                    extra: String::new(),
                    pos: p,
                });
            }
        }
    }
    out.sort_by_key(|f| f.pos);
    let mut seen = Vec::new();
    out.retain(|f| {
        let new = !seen.contains(&f.value);
        seen.push(f.value.clone());
        new
    });
    out
}

/// Indicator catalogue: (canonical name, pattern).
pub(crate) static INDICATORS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        ("RSI", r"\brsi\b|relative strength index"),
        ("MACD", r"\bmacd\b"),
        ("EMA", r"\bemas?\b|exponential moving averages?"),
        ("SMA", r"\bsmas?\b|simple moving averages?"),
        (
            "Moving average",
            r"(?:^|[^a-z])(?:moving averages?|\bmas?\b)(?:$|[^a-z])",
        ),
        ("Bollinger Bands", r"\bbollinger(?: bands?)?\b"),
        ("VWAP", r"\bvwap\b"),
        ("ATR", r"\batr\b|average true range"),
        ("Stochastic", r"\bstochastics?\b|\bstoch\b"),
        ("Ichimoku", r"\bichimoku\b"),
        ("Fibonacci retracement", r"\bfibonacci\b|\bfib\b"),
        ("ADX", r"\badx\b"),
        ("CCI", r"\bcci\b"),
        ("OBV", r"\bobv\b|on[- ]balance volume"),
        ("Parabolic SAR", r"parabolic sar|\bpsar\b"),
        ("Supertrend", r"\bsuper ?trend\b"),
        ("Pivot points", r"\bpivot points?\b"),
        ("Volume", r"\bvolume\b"),
        ("Support and resistance", r"\bsupport\b|\bresistance\b"),
        (
            "Candle wicks",
            r"\bwicks?\b|\bpin ?bars?\b|\brejection candles?\b",
        ),
        ("Trendline", r"\btrend ?lines?\b"),
    ]
    .into_iter()
    .map(|(n, p)| (n, Regex::new(p).unwrap()))
    .collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    fn values(f: Vec<Found>) -> Vec<String> {
        f.into_iter().map(|f| f.value).collect()
    }

    #[test]
    fn finds_instruments() {
        let t = "trading eur/usd and gbpjpy, the euro dollar, then bitcoin and the s&p 500";
        assert_eq!(
            values(instruments(t)),
            vec!["EUR/USD", "GBP/JPY", "BTC/USD", "SPX"]
        );
    }

    #[test]
    fn finds_timeframes() {
        let t = "start with the daily chart then the four hour chart and a 15 minute timeframe; two hours later";
        assert_eq!(values(timeframes(t, false)), vec!["1D", "4H", "15m"]);
        assert_eq!(values(timeframes("eur/usd 4h - bounce", true)), vec!["4H"]);
        assert_eq!(values(timeframes("btcusd h1 chart", true)), vec!["1H"]);
        assert!(timeframes("two hours later", false).is_empty());
        for (t, want) in [
            ("on the 1h chart", "1H"),
            ("the h1 for direction", "1H"),
            ("the 60m chart", "1H"),
            ("the 60-minute chart", "1H"),
            ("the 4-hour chart", "4H"),
            ("h4 entries", "4H"),
            ("levels from d1", "1D"),
            ("the 1d close", "1D"),
            ("on the daily, buy the dip", "1D"),
            ("the w1 chart", "1W"),
            ("the m15 chart", "15m"),
            ("a 15m entry", "15m"),
            ("the 240-minute chart", "4H"),
        ] {
            assert_eq!(values(timeframes(t, false)), vec![want], "{t}");
        }
        assert!(timeframes("it costs $15m", false).is_empty());
        assert!(timeframes("over 1m shares traded", false).is_empty());
    }

    #[test]
    fn numbers() {
        assert_eq!(number("four"), Some(4.0));
        assert_eq!(number("1,250.5"), Some(1250.5));
        assert_eq!(fmt_num(1.0), "1");
        assert_eq!(fmt_num(0.5), "0.5");
    }
}
