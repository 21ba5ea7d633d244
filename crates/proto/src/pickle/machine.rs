//! The unpickler's stack machine: opcodes of protocols 0–5 over shared containers (pickle's memo
//! shares them), with every length and index checked against the input.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::classes::reduce;
use super::{Dict, List, P};

#[derive(Default)]
pub(super) struct Machine {
    stack: Vec<P>,
    marks: Vec<usize>,
    memo: HashMap<u64, P>,
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len());
        let end = end.ok_or("pickle ends in the middle of a value")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn uint(&mut self, n: usize) -> Result<u64, String> {
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
    }
    fn len(&mut self, n: usize) -> Result<usize, String> {
        let l = self.uint(n)?;
        usize::try_from(l)
            .ok()
            .filter(|l| *l <= self.data.len())
            .ok_or_else(|| format!("pickle length {l} is past its end"))
    }
    fn line(&mut self) -> Result<&'a [u8], String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("pickle ends in the middle of a line")?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }
    fn text_line(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.line()?).map_err(|_| "pickle line is not text".to_string())
    }
}

impl Machine {
    fn pop(&mut self) -> Result<P, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }
    fn top(&mut self) -> Result<&mut P, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".into())
    }
    fn pop_mark(&mut self) -> Result<Vec<P>, String> {
        let m = self.marks.pop().ok_or("pickle MARK missing")?;
        if m > self.stack.len() {
            return Err("pickle MARK past the stack".into());
        }
        Ok(self.stack.split_off(m))
    }
    fn memo_get(&self, i: u64) -> Result<P, String> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("pickle memo {i} was never stored"))
    }
    fn memo_put(&mut self, i: u64) -> Result<(), String> {
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or("pickle PUT on an empty stack")?;
        self.memo.insert(i, v);
        Ok(())
    }

    pub(super) fn run(mut self, data: &[u8]) -> Result<P, String> {
        let mut r = Input { data, pos: 0 };
        loop {
            let op = r.byte()?;
            match op {
                0x80 => {
                    let v = r.byte()?;
                    if v > 5 {
                        return Err(format!("pickle protocol {v} is newer than 5"));
                    }
                }
                0x95 => {
                    r.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(P::None),
                0x88 => self.stack.push(P::Bool(true)),
                0x89 => self.stack.push(P::Bool(false)),
                b'I' => {
                    let v = match r.text_line()? {
                        "00" => P::Bool(false),
                        "01" => P::Bool(true),
                        t => P::Int(parse_int(t)?),
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let t = r.text_line()?;
                    self.stack.push(P::Int(parse_int(t.trim_end_matches('L'))?));
                }
                b'J' => {
                    let b = r.take(4)?;
                    let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    self.stack.push(P::Int(i128::from(v)));
                }
                b'K' => {
                    let v = r.uint(1)?;
                    self.stack.push(P::Int(i128::from(v)));
                }
                b'M' => {
                    let v = r.uint(2)?;
                    self.stack.push(P::Int(i128::from(v)));
                }
                0x8a | 0x8b => {
                    let n = r.len(if op == 0x8a { 1 } else { 4 })?;
                    self.stack.push(P::Int(long(r.take(n)?)?));
                }
                b'F' => {
                    let t = r.text_line()?;
                    let f = t
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad pickle float {t:?}"))?;
                    self.stack.push(P::Float(f));
                }
                b'G' => {
                    let b = r.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(P::Float(f64::from_be_bytes(a)));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = r.len(match op {
                        b'X' => 4,
                        0x8c => 1,
                        _ => 8,
                    })?;
                    let s = std::str::from_utf8(r.take(n)?)
                        .map_err(|_| "pickle string is not UTF-8".to_string())?;
                    self.stack.push(P::Str(s.into()));
                }
                b'V' => {
                    let s = raw_unicode_escape(r.line()?)?;
                    self.stack.push(P::Str(s));
                }
                b'S' => {
                    let s = quoted(r.text_line()?)?;
                    self.stack.push(P::Str(s));
                }
                b'T' | b'U' => {
                    let n = r.len(if op == b'T' { 4 } else { 1 })?;
                    // Python 2 `str`: read as Latin-1 text (Python 3's default for such pickles
                    // is ASCII; Latin-1 never fails).
                    let s = r.take(n)?.iter().map(|b| char::from(*b)).collect();
                    self.stack.push(P::Str(s));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = r.len(match op {
                        b'B' => 4,
                        b'C' => 1,
                        _ => 8,
                    })?;
                    self.stack.push(P::Bytes(r.take(n)?.to_vec()));
                }
                b']' => self.stack.push(P::List(Rc::default())),
                b')' => self.stack.push(P::Tuple(Rc::default())),
                b'}' => self.stack.push(P::Dict(Rc::default())),
                0x8f => self.stack.push(P::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(P::List(Rc::new(RefCell::new(items))));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(P::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(P::Tuple(Rc::new(items)));
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.stack.push(P::List(Rc::new(RefCell::new(items))));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack
                        .push(P::Dict(Rc::new(RefCell::new(pairs(items)?))));
                }
                b'a' => {
                    let v = self.pop()?;
                    list_of(self.top()?)?.borrow_mut().push(v);
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    list_of(self.top()?)?.borrow_mut().extend(items);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    dict_of(self.top()?)?.borrow_mut().push((k, v));
                }
                b'u' => {
                    let items = pairs(self.pop_mark()?)?;
                    dict_of(self.top()?)?.borrow_mut().extend(items);
                }
                b'g' => {
                    let i = parse_int(r.text_line()?)?;
                    let v = self.memo_get(i as u64)?;
                    self.stack.push(v);
                }
                b'h' | b'j' => {
                    let i = r.uint(if op == b'h' { 1 } else { 4 })?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'p' => {
                    let i = parse_int(r.text_line()?)?;
                    self.memo_put(i as u64)?;
                }
                b'q' | b'r' => {
                    let i = r.uint(if op == b'q' { 1 } else { 4 })?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo_put(i)?;
                }
                b'c' => {
                    let module = r.text_line()?.to_string();
                    let name = r.text_line()?.to_string();
                    self.stack.push(P::Global(Rc::new((module, name))));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (P::Str(module), P::Str(name)) = (module, name) else {
                        return Err("pickle STACK_GLOBAL without two strings".into());
                    };
                    self.stack.push(P::Global(Rc::new((module, name))));
                }
                b'R' => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.stack.push(reduce(class, args)?);
                }
                0x81 | 0x92 => {
                    if op == 0x92 {
                        self.pop()?; // kwargs
                    }
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.stack.push(reduce(class, args)?);
                }
                b'i' => {
                    let module = r.text_line()?.to_string();
                    let name = r.text_line()?.to_string();
                    let args = self.pop_mark()?;
                    let class = P::Global(Rc::new((module, name)));
                    self.stack.push(reduce(class, P::Tuple(Rc::new(args)))?);
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err("pickle OBJ without a class".into());
                    }
                    let class = items.remove(0);
                    self.stack.push(reduce(class, P::Tuple(Rc::new(items)))?);
                }
                b'b' => {
                    // __setstate__: the state of objects kept as class + arguments is not needed.
                    self.pop()?;
                }
                b'P' | b'Q' | 0x82..=0x84 | 0x97 | 0x98 => {
                    return Err(format!(
                        "pickle opcode 0x{op:02x} (persistent ids, extension registry or \
                         out-of-band buffers) is not supported"
                    ));
                }
                other => return Err(format!("unknown pickle opcode 0x{other:02x}")),
            }
        }
    }
}

fn parse_int(t: &str) -> Result<i128, String> {
    t.trim()
        .parse()
        .map_err(|_| format!("bad pickle integer {t:?}"))
}

/// LONG1/LONG4: little-endian two's complement.
fn long(b: &[u8]) -> Result<i128, String> {
    if b.len() > 16 {
        return Err("pickle integer beyond 128 bits".into());
    }
    let neg = b.last().is_some_and(|x| x & 0x80 != 0);
    let mut a = [if neg { 0xff } else { 0 }; 16];
    a[..b.len()].copy_from_slice(b);
    Ok(i128::from_le_bytes(a))
}

fn pairs(items: Vec<P>) -> Result<Vec<(P, P)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("pickle dict with an odd number of items".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn list_of(p: &mut P) -> Result<List, String> {
    match p {
        P::List(l) => Ok(l.clone()),
        _ => Err("pickle APPEND to something not a list".into()),
    }
}

fn dict_of(p: &mut P) -> Result<Dict, String> {
    match p {
        P::Dict(d) => Ok(d.clone()),
        _ => Err("pickle SETITEM on something not a dict".into()),
    }
}

/// `'abc'` / `"a\'b"` of protocol 0's STRING (Python 2 repr).
fn quoted(t: &str) -> Result<String, String> {
    let t = t.trim_end();
    let inner = t
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| t.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
        .ok_or_else(|| format!("bad pickle STRING {t:?}"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('x') => {
                let h: String = chars.by_ref().take(2).collect();
                let b = u8::from_str_radix(&h, 16).map_err(|_| format!("bad escape \\x{h}"))?;
                out.push(char::from(b));
            }
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

/// Protocol 0's UNICODE: Latin-1 bytes with `\uXXXX` / `\UXXXXXXXX` escapes.
fn raw_unicode_escape(b: &[u8]) -> Result<String, String> {
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let width = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if width == 0 {
            out.push(char::from(b[i]));
            i += 1;
            continue;
        }
        let hex = b
            .get(i + 2..i + 2 + width)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)
            .ok_or("bad \\u escape in a pickle UNICODE")?;
        out.push(hex);
        i += 2 + width;
    }
    Ok(out)
}
