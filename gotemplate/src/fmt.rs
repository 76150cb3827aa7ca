//! Printing follows Go's fmt package for the types that JSON has.

use std::fmt::Write as _;

use serde_json::Value;

use crate::value::{go_type, int_of, sorted_entries};
use crate::{typed_nil_text, MAX_FMT_NUM};

/// A string buffer that stops growing, and remembers it, once it would pass
/// its limit.
pub(crate) struct Out {
    pub(crate) s: String,
    limit: usize,
    pub(crate) over: bool,
}

impl Out {
    pub(crate) fn new(limit: usize) -> Self {
        Out { s: String::new(), limit, over: false }
    }

    pub(crate) fn push_str(&mut self, t: &str) {
        if self.over {
            return;
        }
        if t.len() > self.limit - self.s.len() {
            self.over = true;
            return;
        }
        self.s.push_str(t);
    }

    pub(crate) fn push(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.push_str(c.encode_utf8(&mut buf));
    }

    /// Appends `n` copies of `c`.
    fn pad(&mut self, n: usize, c: char) {
        if self.over {
            return;
        }
        if n.saturating_mul(c.len_utf8()) > self.limit - self.s.len() {
            self.over = true;
            return;
        }
        self.s.extend(std::iter::repeat_n(c, n));
    }
}

/// Prints a value as an action shows it: `null` is `<no value>`.
pub(crate) fn print_top(o: &mut Out, v: &Value) {
    if let Some(t) = typed_nil_text(v) {
        o.push_str(t);
    } else if v.is_null() {
        o.push_str("<no value>");
    } else {
        fmt_arg(o, v, 'v', &Spec::default(), false);
    }
}

/// The flags, width and precision of one printf verb.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Pads `s` to the width in `sp`, on the left unless `-` was given.
fn pad_str(o: &mut Out, s: &str, sp: &Spec) {
    let w = sp.width.unwrap_or(0);
    let n = s.chars().count();
    if n >= w {
        o.push_str(s);
    } else if sp.minus {
        o.push_str(s);
        o.pad(w - n, ' ');
    } else {
        o.pad(w - n, if sp.zero { '0' } else { ' ' });
        o.push_str(s);
    }
}

/// Writes Go's complaint about a verb that does not suit its operand, such as
/// `%!d(string=abc)`.
fn bad_verb(o: &mut Out, v: &Value, verb: char) {
    o.push_str("%!");
    o.push(verb);
    o.push('(');
    if v.is_null() {
        o.push_str("<nil>");
    } else {
        o.push_str(go_type(v));
        o.push('=');
        fmt_arg(o, v, 'v', &Spec::default(), false);
    }
    o.push(')');
}

/// Formats one operand for one verb, as Go's `fmt` does. `nested` is true for
/// elements of arrays and objects.
pub(crate) fn fmt_arg(o: &mut Out, v: &Value, verb: char, sp: &Spec, nested: bool) {
    if o.over {
        return;
    }
    if verb == 'T' {
        pad_str(o, go_type(v), sp);
        return;
    }
    if let Some(t) = typed_nil_text(v) {
        pad_str(o, t, sp);
        return;
    }
    match v {
        Value::Null if nested => o.push_str("<nil>"),
        Value::Null if verb == 'v' => pad_str(o, "<nil>", sp),
        Value::Null => bad_verb(o, v, verb),
        Value::Bool(b) => match verb {
            't' | 'v' => pad_str(o, if *b { "true" } else { "false" }, sp),
            _ => bad_verb(o, v, verb),
        },
        Value::Number(n) => match int_of(n) {
            Some(i) => fmt_int(o, v, i, verb, sp),
            None => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match verb {
                    'v' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G' => fmt_float(o, f, verb, sp),
                    'd' if f.fract() == 0.0 && f.abs() < 1e30 => fmt_int(o, v, f as i128, verb, sp),
                    _ => bad_verb(o, v, verb),
                }
            }
        },
        Value::String(s) => fmt_string(o, s, verb, sp),
        Value::Array(a) => {
            o.push('[');
            for (i, e) in a.iter().enumerate() {
                if o.over {
                    return;
                }
                if i > 0 {
                    o.push(' ');
                }
                fmt_arg(o, e, verb, sp, true);
            }
            o.push(']');
        }
        Value::Object(m) => {
            o.push_str("map[");
            for (i, (k, e)) in sorted_entries(m).into_iter().enumerate() {
                if o.over {
                    return;
                }
                if i > 0 {
                    o.push(' ');
                }
                fmt_string(o, k, verb, sp);
                o.push(':');
                fmt_arg(o, e, verb, sp, true);
            }
            o.push(']');
        }
    }
}

fn fmt_string(o: &mut Out, s: &str, verb: char, sp: &Spec) {
    let clipped = match sp.prec.and_then(|p| s.char_indices().nth(p)) {
        Some((i, _)) => &s[..i],
        None => s,
    };
    match verb {
        'v' | 's' => pad_str(o, clipped, sp),
        'q' => {
            let q = if sp.sharp && can_backquote(clipped) {
                format!("`{clipped}`")
            } else {
                quote_with(clipped, '"', sp.plus)
            };
            pad_str(o, &q, sp);
        }
        'x' | 'X' => {
            let bytes = match sp.prec {
                Some(p) if p < s.len() => &s.as_bytes()[..p],
                _ => s.as_bytes(),
            };
            let mut h = String::with_capacity(bytes.len() * 2);
            for (i, b) in bytes.iter().enumerate() {
                if sp.space && i > 0 {
                    h.push(' ');
                }
                if sp.sharp && (sp.space || i == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    let _ = write!(h, "{b:02x}");
                } else {
                    let _ = write!(h, "{b:02X}");
                }
            }
            pad_str(o, &h, sp);
        }
        _ => {
            o.push_str("%!");
            o.push(verb);
            o.push_str("(string=");
            o.push_str(s);
            o.push(')');
        }
    }
}

fn fmt_int(o: &mut Out, v: &Value, x: i128, verb: char, sp: &Spec) {
    match verb {
        'v' | 'd' => fmt_int_base(o, x, 10, verb, sp),
        'b' => fmt_int_base(o, x, 2, verb, sp),
        'o' | 'O' => fmt_int_base(o, x, 8, verb, sp),
        'x' | 'X' => fmt_int_base(o, x, 16, verb, sp),
        'c' => pad_str(o, &rune_of(x).to_string(), sp),
        'q' => pad_str(o, &quote_with(&rune_of(x).to_string(), '\'', sp.plus), sp),
        'U' => {
            let mut s = if x < 0 { format!("U+{:X}", x as i64 as u64) } else { format!("U+{x:04X}") };
            let c = rune_of(x);
            if sp.sharp && is_print(c) {
                let _ = write!(s, " '{c}'");
            }
            pad_str(o, &s, sp);
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => fmt_float(o, x as f64, verb, sp),
        _ => bad_verb(o, v, verb),
    }
}

fn rune_of(x: i128) -> char {
    u32::try_from(x).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}')
}

/// Formats an integer in a base, with Go's handling of precision, zero
/// padding, signs and `#` prefixes.
fn fmt_int_base(o: &mut Out, x: i128, base: u32, verb: char, sp: &Spec) {
    let neg = x < 0;
    let mag = x.unsigned_abs();
    let mut digits = match base {
        2 => format!("{mag:b}"),
        8 => format!("{mag:o}"),
        16 if verb == 'X' => format!("{mag:X}"),
        16 => format!("{mag:x}"),
        _ => mag.to_string(),
    };
    let want = if let Some(p) = sp.prec {
        if p == 0 && mag == 0 {
            o.pad(sp.width.unwrap_or(0), ' ');
            return;
        }
        p
    } else if sp.zero && !sp.minus && sp.width.is_some() {
        let w = sp.width.unwrap_or(0);
        if neg || sp.plus || sp.space {
            w.saturating_sub(1)
        } else {
            w
        }
    } else {
        0
    };
    if digits.len() < want {
        let mut z = "0".repeat(want - digits.len());
        z.push_str(&digits);
        digits = z;
    }
    let mut s = String::with_capacity(digits.len() + 3);
    if neg {
        s.push('-');
    } else if sp.plus {
        s.push('+');
    } else if sp.space {
        s.push(' ');
    }
    if sp.sharp {
        match base {
            2 => s.push_str("0b"),
            8 if !digits.starts_with('0') => s.push('0'),
            16 => s.push_str(if verb == 'X' { "0X" } else { "0x" }),
            _ => {}
        }
    }
    if verb == 'O' {
        s.push_str("0o");
    }
    s.push_str(&digits);
    pad_str(o, &s, &Spec { zero: false, ..*sp });
}

/// Formats a float for `%v`, `%e`, `%f` and `%g` and their capitals.
fn fmt_float(o: &mut Out, f: f64, verb: char, sp: &Spec) {
    let upper = verb.is_ascii_uppercase();
    let body = if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        "Inf".to_string()
    } else {
        let a = f.abs();
        match verb {
            'e' | 'E' => fmt_e(a, sp.prec.unwrap_or(6), upper),
            'f' | 'F' => fmt_fixed(a, sp.prec.unwrap_or(6)),
            _ => fmt_g(a, sp.prec, upper),
        }
    };
    let sign = if f.is_sign_negative() && !f.is_nan() {
        "-"
    } else if sp.plus || (f.is_infinite() && !sp.space) {
        "+"
    } else if sp.space {
        " "
    } else {
        ""
    };
    let w = sp.width.unwrap_or(0);
    let len = sign.len() + body.len();
    if sp.zero && !sp.minus && w > len && f.is_finite() {
        o.push_str(sign);
        o.pad(w - len, '0');
        o.push_str(&body);
    } else {
        pad_str(o, &format!("{sign}{body}"), &Spec { zero: false, ..*sp });
    }
}

/// Returns the significant decimal digits of a positive finite `a` and the
/// position of the decimal point, so that `a = 0.d1d2d3... * 10^dp`. With
/// `sig`, the digits are rounded to that many; trailing zeros are dropped.
fn float_digits(a: f64, sig: Option<usize>) -> (Vec<u8>, i64) {
    if a == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        None => format!("{a:e}"),
        Some(p) => format!("{:.*e}", p.saturating_sub(1).min(MAX_EXACT_DIGITS), a),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    (d, exp + 1)
}

/// Formats digits in Go's `%e` layout with `decimals` digits after the point.
fn layout_e(d: &[u8], dp: i64, decimals: usize, upper: bool) -> String {
    let mut s = String::with_capacity(decimals + 8);
    s.push(char::from(d.first().copied().unwrap_or(b'0')));
    if decimals > 0 {
        s.push('.');
        for i in 1..=decimals {
            s.push(char::from(d.get(i).copied().unwrap_or(b'0')));
        }
    }
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    s.push(if upper { 'E' } else { 'e' });
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.unsigned_abs());
    s
}

/// Formats digits in Go's `%f` layout with `decimals` digits after the point.
fn layout_f(d: &[u8], dp: i64, decimals: usize) -> String {
    let mut s = String::new();
    if dp > 0 {
        for i in 0..dp {
            s.push(char::from(usize::try_from(i).ok().and_then(|i| d.get(i)).copied().unwrap_or(b'0')));
        }
    } else {
        s.push('0');
    }
    if decimals > 0 {
        s.push('.');
        for i in 0..decimals {
            let j = dp + i as i64;
            let c = usize::try_from(j).ok().and_then(|j| d.get(j)).copied().unwrap_or(b'0');
            s.push(char::from(c));
        }
    }
    s
}

/// Digits past which an `f64` has only zeros: its exact decimal expansion
/// has at most 767 significant digits and ends within 1074 decimal places.
/// Rust's formatter refuses precisions above 65535, so larger ones are
/// produced by padding with zeros.
const MAX_EXACT_DIGITS: usize = 1100;

/// Go's `%f` with a precision, for a positive finite number.
fn fmt_fixed(a: f64, prec: usize) -> String {
    let p = prec.min(MAX_EXACT_DIGITS);
    let mut s = format!("{a:.p$}");
    s.extend(std::iter::repeat_n('0', prec - p));
    s
}

/// Go's `%e` with a precision, for a positive finite number.
fn fmt_e(a: f64, prec: usize, upper: bool) -> String {
    let p = prec.min(MAX_EXACT_DIGITS);
    let s = format!("{a:.p$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut out = String::with_capacity(prec + 8);
    out.push_str(mant);
    out.extend(std::iter::repeat_n('0', prec - p));
    let _ =
        write!(out, "{}{}{:02}", if upper { 'E' } else { 'e' }, if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    out
}

/// Go's `%g` (and so `%v`) for a positive finite number: the shortest
/// representation when `prec` is `None`, exponent form for large and small
/// magnitudes.
fn fmt_g(a: f64, prec: Option<usize>, upper: bool) -> String {
    let (d, dp) = float_digits(a, prec.map(|p| p.max(1)));
    let nd = d.len() as i64;
    let mut p = prec.map_or(nd, |p| p.max(1) as i64);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if prec.is_none() {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        return layout_e(&d, dp, usize::try_from(p - 1).unwrap_or(0), upper);
    }
    if p > dp {
        p = nd;
    }
    layout_f(&d, dp, usize::try_from(p - dp).unwrap_or(0))
}

/// Go's `strconv.IsPrint`, approximated without Unicode tables.
pub(crate) fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(
        u32::from(c),
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0xE000..=0xF8FF
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0xFFFE
            | 0xFFFF
            | 0xE0000..=0xE0FFF
            | 0xF0000..
    )
}

/// Quotes a string as Go's `strconv.Quote` does.
pub(crate) fn go_quote(s: &str) -> String {
    quote_with(s, '"', false)
}

/// Quotes `s` between `q` characters with Go escapes; `ascii` escapes every
/// non-ASCII character too.
fn quote_with(s: &str, q: char, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
            out.push(c);
            continue;
        }
        if is_print(c) && (!ascii || c.is_ascii()) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\x07' => write!(out, "\\a"),
            '\x08' => write!(out, "\\b"),
            '\x0c' => write!(out, "\\f"),
            '\n' => write!(out, "\\n"),
            '\r' => write!(out, "\\r"),
            '\t' => write!(out, "\\t"),
            '\x0b' => write!(out, "\\v"),
            c if u32::from(c) < 0x20 || c == '\x7f' => write!(out, "\\x{:02x}", u32::from(c)),
            c if u32::from(c) < 0x10000 => write!(out, "\\u{:04x}", u32::from(c)),
            c => write!(out, "\\U{:08x}", u32::from(c)),
        };
    }
    out.push(q);
    out
}

/// Go's `strconv.CanBackquote`.
fn can_backquote(s: &str) -> bool {
    s.chars().all(|c| c != '`' && c != '\u{7f}' && c != '\u{feff}' && (c >= ' ' || c == '\t'))
}

/// Parses a width or precision; Go gives up on absurdly large ones.
fn parse_num(b: &[u8], start: usize) -> (Option<usize>, usize) {
    let mut num = 0usize;
    let mut i = start;
    while i < b.len() && b[i].is_ascii_digit() {
        if num > MAX_FMT_NUM {
            return (None, b.len());
        }
        num = num * 10 + usize::from(b[i] - b'0');
        i += 1;
    }
    ((i > start).then_some(num), i)
}

/// Reads a `*` width or precision from the arguments.
fn star_arg(args: &[&Value], argn: &mut usize) -> Option<i64> {
    let v = args.get(*argn)?;
    *argn += 1;
    match v {
        Value::Number(n) => n.as_i64().filter(|x| x.unsigned_abs() <= MAX_FMT_NUM as u64),
        _ => None,
    }
}

/// Go's `fmt.Sprintf` over JSON values. Returns `None` when the result would
/// exceed `limit` bytes.
pub(crate) fn sprintf(format: &str, args: &[&Value], limit: usize) -> Option<String> {
    let b = format.as_bytes();
    let end = b.len();
    let mut o = Out::new(limit);
    let mut argn = 0usize;
    let mut i = 0usize;
    while i < end {
        let last = i;
        while i < end && b[i] != b'%' {
            i += 1;
        }
        if i > last {
            o.push_str(&format[last..i]);
        }
        if i >= end {
            break;
        }
        i += 1;
        let mut sp = Spec::default();
        while i < end {
            match b[i] {
                b'#' => sp.sharp = true,
                b'0' => sp.zero = !sp.minus,
                b'+' => sp.plus = true,
                b'-' => {
                    sp.minus = true;
                    sp.zero = false;
                }
                b' ' => sp.space = true,
                _ => break,
            }
            i += 1;
        }
        if i < end && b[i] == b'*' {
            i += 1;
            match star_arg(args, &mut argn) {
                Some(w) => {
                    if w < 0 {
                        sp.minus = true;
                        sp.zero = false;
                    }
                    sp.width = usize::try_from(w.unsigned_abs()).ok();
                }
                None => o.push_str("%!(BADWIDTH)"),
            }
        } else {
            let (w, ni) = parse_num(b, i);
            sp.width = w;
            i = ni;
        }
        if i + 1 < end && b[i] == b'.' {
            i += 1;
            if b[i] == b'*' {
                i += 1;
                match star_arg(args, &mut argn) {
                    Some(p) if p >= 0 => sp.prec = usize::try_from(p).ok(),
                    _ => o.push_str("%!(BADPREC)"),
                }
            } else {
                let (p, ni) = parse_num(b, i);
                sp.prec = Some(p.unwrap_or(0));
                i = ni;
            }
        }
        let Some(verb) = format.get(i..).and_then(|r| r.chars().next()) else {
            o.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            o.push('%');
        } else if let Some(v) = args.get(argn) {
            fmt_arg(&mut o, v, verb, &sp, false);
            argn += 1;
        } else {
            o.push_str("%!");
            o.push(verb);
            o.push_str("(MISSING)");
        }
        if o.over {
            return None;
        }
    }
    if argn < args.len() {
        o.push_str("%!(EXTRA ");
        for (k, v) in args[argn..].iter().enumerate() {
            if k > 0 {
                o.push_str(", ");
            }
            if v.is_null() {
                o.push_str("<nil>");
            } else {
                o.push_str(go_type(v));
                o.push('=');
                fmt_arg(&mut o, v, 'v', &Spec::default(), false);
            }
        }
        o.push(')');
    }
    (!o.over).then_some(o.s)
}
