//! Token-aware chunking of long content: whole lines (so `[hh:mm:ss]` prefixes stay with their
//! text), a tail of each chunk repeated at the start of the next, and the current page marker
//! carried into a chunk that starts mid-page.

use crate::content;

/// Rough token count for English text (≈ 4 characters a token, the usual rule of thumb for
/// BPE tokenizers). Used only to size chunks, never for billing.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Splits `text` into chunks of at most about `chunk_tokens` tokens, each starting with up to
/// `overlap_tokens` from the end of the previous one. Text that fits is returned whole.
pub fn chunk_text(text: &str, chunk_tokens: usize, overlap_tokens: usize) -> Vec<String> {
    let chunk_tokens = chunk_tokens.max(64);
    let overlap_tokens = overlap_tokens.min(chunk_tokens / 4);
    if estimate_tokens(text) <= chunk_tokens {
        return vec![text.to_string()];
    }
    let pieces = split_long_lines(text, chunk_tokens / 2);
    let mut page = None;
    let pages: Vec<Option<u32>> = pieces
        .iter()
        .map(|p| {
            for _ in p.chars().take_while(|c| *c == '\u{c}') {
                page = Some(page.map_or(2, |x| x + 1));
            }
            if let Some(n) = content::page_marker(p) {
                page = Some(n);
            }
            page
        })
        .collect();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < pieces.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < pieces.len() {
            let t = estimate_tokens(&pieces[end]) + 1;
            if tokens + t > chunk_tokens && end > start {
                break;
            }
            tokens += t;
            end += 1;
        }
        let mut chunk = String::new();
        if start > 0
            && let Some(p) = pages[start]
            && content::page_marker(&pieces[start]).is_none()
        {
            chunk.push_str(&format!("[page {p}]\n"));
        }
        chunk.push_str(&pieces[start..end].join("\n"));
        chunks.push(chunk);
        if end >= pieces.len() {
            break;
        }
        // Step back over the overlap, but always move forward by at least one piece.
        let mut back = end;
        let mut o = 0;
        while back > start + 1 {
            let t = estimate_tokens(&pieces[back - 1]) + 1;
            if o + t > overlap_tokens {
                break;
            }
            o += t;
            back -= 1;
        }
        start = back;
    }
    chunks
}

/// Lines longer than `max_tokens` (PDF paragraphs without newlines) are cut at whitespace.
fn split_long_lines(text: &str, max_tokens: usize) -> Vec<String> {
    let max_chars = max_tokens.max(16) * 4;
    let mut out = Vec::new();
    for line in text.split('\n') {
        if line.chars().count() <= max_chars {
            out.push(line.to_string());
            continue;
        }
        let mut cur = String::new();
        for word in line.split_whitespace() {
            if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > max_chars {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            // A single giant "word" (base64, a URL) is cut by characters.
            if word.chars().count() > max_chars {
                let chars: Vec<char> = word.chars().collect();
                for part in chars.chunks(max_chars) {
                    out.push(part.iter().collect());
                }
                continue;
            }
            cur.push_str(word);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_text_is_one_chunk() {
        assert_eq!(chunk_text("hello", 1000, 100), vec!["hello".to_string()]);
    }

    #[test]
    fn chunks_cover_everything_with_overlap() {
        let text: String = (0..2000)
            .map(|i| {
                format!(
                    "[00:{:02}:{:02}] line number {i} says something\n",
                    i / 60 % 60,
                    i % 60
                )
            })
            .collect();
        let chunks = chunk_text(&text, 1000, 100);
        assert!(chunks.len() > 10);
        for c in &chunks {
            assert!(estimate_tokens(c) <= 1000 + 20, "chunk too big");
            assert!(
                c.lines().all(|l| l.is_empty() || l.starts_with('[')),
                "lines kept whole"
            );
        }
        for i in 0..2000 {
            let needle = format!("line number {i} says");
            assert!(chunks.iter().any(|c| c.contains(&needle)), "lost line {i}");
        }
        // Overlap: the last line of chunk 0 reappears in chunk 1.
        let last = chunks[0].lines().last().unwrap();
        assert!(chunks[1].contains(last));
    }

    #[test]
    fn page_marker_carried_and_long_lines_split() {
        let mut text = String::from("--- page 7 ---\n");
        text.push_str(&"word ".repeat(5000));
        let chunks = chunk_text(&text, 500, 50);
        assert!(chunks.len() > 5);
        assert!(chunks[0].starts_with("--- page 7 ---"));
        assert!(chunks[3].starts_with("[page 7]"));
    }
}
