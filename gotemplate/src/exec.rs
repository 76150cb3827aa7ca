//! Execution walks the tree over borrowed data, within fixed limits.

use std::cmp::Ordering;
use std::rc::Rc;

use serde_json::{Number, Value};

use crate::fmt::{fmt_arg, print_top, sprintf, Out, Spec};
use crate::parse::{Branch, Cmd, Func, Node, Pipe, Span, Term, TermKind};
use crate::value::{go_type, int_of};
use crate::{
    go_print, line_col, typed_nil_text, without_typed_nils, TemplateError, FORMAT_COST, MAX_ITEMS, MAX_ITERATIONS,
    MAX_OUTPUT, MAX_STEPS, MAX_WORK,
};

/// The `null` that missing values evaluate to.
static NULL: Value = Value::Null;

/// A value during execution: borrowed from the data or the template, or
/// built by a function.
#[derive(Debug, Clone)]
enum Val<'a> {
    Ref(&'a Value),
    Own(Rc<Value>),
}

impl Val<'_> {
    /// The value, a typed nil being `null`.
    fn get(&self) -> &Value {
        let v = self.raw();
        if typed_nil_text(v).is_some() {
            &NULL
        } else {
            v
        }
    }

    /// The value as the data has it, for printing.
    fn raw(&self) -> &Value {
        match self {
            Val::Ref(v) => v,
            Val::Own(v) => v,
        }
    }

    fn own(v: Value) -> Self {
        Val::Own(Rc::new(v))
    }

    fn empty_string() -> Self {
        Val::own(Value::String(String::new()))
    }
}

/// How a list of nodes finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

type ExecResult<T> = Result<T, TemplateError>;

/// Applies the tree `root`, parsed from `src`, to `data`.
pub(crate) fn execute<'a>(src: &'a str, root: &'a [Node], data: &'a Value) -> Result<String, TemplateError> {
    let mut ex = Exec { src, vars: vec![("$", Val::Ref(data))], out: String::new(), steps: 0, iterations: 0, work: 0 };
    ex.walk(root, &Val::Ref(data))?;
    Ok(ex.out)
}

/// The state of one execution.
struct Exec<'a> {
    src: &'a str,
    /// The variables in scope, innermost last; `$` comes first.
    vars: Vec<(&'a str, Val<'a>)>,
    out: String,
    steps: u64,
    iterations: u64,
    work: u64,
}

/// Estimates the cost of copying a value, without recursing.
fn value_cost(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 16,
        Value::Array(a) => {
            a.iter().map(|e| if let Value::String(s) = e { s.len() + 16 } else { 16 }).sum::<usize>() + 16
        }
        Value::Object(m) => m.len() * 64 + 16,
        _ => 16,
    }
}

impl<'a> Exec<'a> {
    fn text(&self, span: Span) -> &'a str {
        self.src.get(span.pos..span.end).unwrap_or("").trim()
    }

    fn err(&self, span: Span, msg: impl Into<String>) -> TemplateError {
        let (line, col) = line_col(self.src, span.pos);
        let text = self.text(span);
        let context = if text.chars().count() > 20 {
            format!("{}...", text.chars().take(20).collect::<String>())
        } else {
            text.to_string()
        };
        TemplateError::Exec { line, col, context, msg: msg.into() }
    }

    fn step(&mut self, span: Span) -> ExecResult<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(self.err(span, format!("template execution exceeded the limit of {MAX_STEPS} steps")));
        }
        Ok(())
    }

    fn charge(&mut self, bytes: usize, span: Span) -> ExecResult<()> {
        self.work = self.work.saturating_add(bytes as u64);
        if self.work > MAX_WORK {
            return Err(self.err(span, format!("template execution exceeded the limit of {MAX_WORK} bytes of work")));
        }
        Ok(())
    }

    fn too_much_output(&self, span: Span) -> TemplateError {
        self.err(span, format!("output exceeds the limit of {MAX_OUTPUT} bytes"))
    }

    /// Turns a string built by a function into a value, enforcing limits;
    /// `cost` is the work charged per byte.
    fn string_result(&mut self, s: String, cost: usize, span: Span) -> ExecResult<Val<'a>> {
        if s.len() > MAX_OUTPUT {
            return Err(self.err(span, format!("result exceeds the limit of {MAX_OUTPUT} bytes")));
        }
        self.charge(s.len().saturating_mul(cost), span)?;
        Ok(Val::own(Value::String(s)))
    }

    /// Applies `f` to the value inside `v`, keeping borrowed values borrowed
    /// and copying parts of built ones.
    fn project(
        &mut self,
        v: &Val<'a>,
        f: impl for<'x> Fn(&'x Value) -> Option<&'x Value>,
        span: Span,
    ) -> ExecResult<Option<Val<'a>>> {
        match v {
            Val::Ref(r) => Ok(f(r).map(Val::Ref)),
            Val::Own(rc) => match f(rc) {
                Some(x) => {
                    self.charge(value_cost(x), span)?;
                    Ok(Some(Val::own(x.clone())))
                }
                None => Ok(None),
            },
        }
    }

    fn lookup(&self, name: &str, span: Span) -> ExecResult<Val<'a>> {
        match self.vars.iter().rev().find(|(n, _)| *n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.err(span, format!("undefined variable: {name}"))),
        }
    }

    fn set_var(&mut self, name: &str, v: Val<'a>, span: Span) -> ExecResult<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(self.err(span, format!("undefined variable: {name}"))),
        }
    }

    fn walk(&mut self, list: &'a [Node], dot: &Val<'a>) -> ExecResult<Flow> {
        for node in list {
            let flow = match node {
                Node::Text(text, span) => {
                    self.step(*span)?;
                    if self.out.len() + text.len() > MAX_OUTPUT {
                        return Err(self.too_much_output(*span));
                    }
                    self.out.push_str(text);
                    Flow::Normal
                }
                Node::Action(pipe) => {
                    self.step(pipe.span)?;
                    let v = self.eval_pipeline(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        let mut o = Out::new(MAX_OUTPUT - self.out.len());
                        print_top(&mut o, v.raw());
                        if o.over {
                            return Err(self.too_much_output(pipe.span));
                        }
                        self.out.push_str(&o.s);
                    }
                    Flow::Normal
                }
                Node::If(branches, else_list) => self.walk_branches(branches, else_list.as_deref(), dot, false)?,
                Node::With(branches, else_list) => self.walk_branches(branches, else_list.as_deref(), dot, true)?,
                Node::Range(branch, else_list) => self.walk_range(branch, else_list.as_deref(), dot)?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    /// Runs an `if` or `with` chain: the first arm whose pipeline is true
    /// wins, otherwise the `else` list runs.
    fn walk_branches(
        &mut self,
        branches: &'a [Branch],
        else_list: Option<&'a [Node]>,
        dot: &Val<'a>,
        with: bool,
    ) -> ExecResult<Flow> {
        let mark = self.vars.len();
        let mut flow = Flow::Normal;
        let mut taken = false;
        for b in branches {
            self.step(b.pipe.span)?;
            let v = self.eval_pipeline(&b.pipe, dot)?;
            if truth(v.get()) {
                flow = self.walk(&b.body, if with { &v } else { dot })?;
                taken = true;
                break;
            }
        }
        if !taken {
            if let Some(list) = else_list {
                flow = self.walk(list, dot)?;
            }
        }
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn walk_range(&mut self, branch: &'a Branch, else_list: Option<&'a [Node]>, dot: &Val<'a>) -> ExecResult<Flow> {
        let pipe = &branch.pipe;
        self.step(pipe.span)?;
        let mark = self.vars.len();
        let val = self.eval_pipeline(pipe, dot)?;
        let base = self.vars.len();
        let (count, keys): (u64, Option<Vec<&str>>) = match val.get() {
            Value::Null => (0, None),
            Value::Array(a) => (a.len() as u64, None),
            Value::Object(m) => {
                // Sorting is paid for, so that re-entering a loop over a big
                // object many times cannot run for ever.
                self.charge(m.len() * 32, pipe.span)?;
                let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
                keys.sort_unstable();
                (keys.len() as u64, Some(keys))
            }
            Value::Number(n) if n.as_i64().is_some() || n.as_u64().is_some() => {
                if pipe.decl.len() > 1 {
                    let msg = format!("can't use {} to iterate over more than one variable", go_print(val.get()));
                    return Err(self.err(pipe.span, msg));
                }
                (n.as_u64().unwrap_or(0), None)
            }
            other => {
                return Err(self.err(pipe.span, format!("range can't iterate over {}", go_print(other))));
            }
        };
        let is_array = matches!(val.get(), Value::Array(_));
        for k in 0..count {
            let (key, elem) = if let Some(keys) = &keys {
                let name = keys.get(k as usize).copied().unwrap_or("");
                let elem = self.project(&val, |x| x.get(name), pipe.span)?.unwrap_or(Val::Ref(&NULL));
                (Val::own(Value::String(name.to_string())), elem)
            } else if is_array {
                let i = k as usize;
                let elem = self.project(&val, |x| x.get(i), pipe.span)?.unwrap_or(Val::Ref(&NULL));
                (Val::own(Value::from(k)), elem)
            } else {
                let v = Val::own(Value::from(k));
                (v.clone(), v)
            };
            let flow = self.iteration(branch, key, elem, base)?;
            if flow == Flow::Break {
                break;
            }
        }
        if count == 0 {
            if let Some(list) = else_list {
                let flow = self.walk(list, dot)?;
                self.vars.truncate(mark);
                return Ok(flow);
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    /// Runs one pass of a range body with the loop variables set.
    fn iteration(&mut self, branch: &'a Branch, key: Val<'a>, elem: Val<'a>, base: usize) -> ExecResult<Flow> {
        let pipe = &branch.pipe;
        self.iterations += 1;
        if self.iterations > MAX_ITERATIONS {
            let msg = format!("range iterations exceeded the limit of {MAX_ITERATIONS}");
            return Err(self.err(pipe.span, msg));
        }
        match (pipe.decl.as_slice(), pipe.is_assign) {
            ([], _) => {}
            ([e], true) => self.set_var(e, elem.clone(), pipe.span)?,
            ([k, e, ..], true) => {
                self.set_var(k, key, pipe.span)?;
                self.set_var(e, elem.clone(), pipe.span)?;
            }
            ([_], false) => {
                if let Some(slot) = base.checked_sub(1).and_then(|i| self.vars.get_mut(i)) {
                    slot.1 = elem.clone();
                }
            }
            ([_, _, ..], false) => {
                if let Some(slot) = base.checked_sub(2).and_then(|i| self.vars.get_mut(i)) {
                    slot.1 = key;
                }
                if let Some(slot) = base.checked_sub(1).and_then(|i| self.vars.get_mut(i)) {
                    slot.1 = elem.clone();
                }
            }
        }
        let flow = self.walk(&branch.body, &elem)?;
        self.vars.truncate(base);
        Ok(flow)
    }

    fn eval_pipeline(&mut self, pipe: &'a Pipe, dot: &Val<'a>) -> ExecResult<Val<'a>> {
        let mut value: Option<Val<'a>> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(cmd, dot, value)?);
        }
        let v = value.unwrap_or(Val::Ref(&NULL));
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, v.clone(), pipe.span)?;
            } else {
                self.vars.push((name.as_str(), v.clone()));
            }
        }
        Ok(v)
    }

    fn eval_command(&mut self, cmd: &'a Cmd, dot: &Val<'a>, fin: Option<Val<'a>>) -> ExecResult<Val<'a>> {
        self.step(cmd.span)?;
        let Some((first, rest)) = cmd.args.split_first() else {
            return Err(self.err(cmd.span, "empty command"));
        };
        let has_args = !rest.is_empty() || fin.is_some();
        match &first.kind {
            TermKind::Func(f) => self.call(*f, cmd.span, rest, fin, dot),
            TermKind::Nil => Err(self.err(first.span, "nil is not a command")),
            TermKind::Field(names) if has_args => {
                let name = names.last().map_or("", String::as_str);
                Err(self.err(first.span, format!("{name} is not a method but has arguments")))
            }
            _ if has_args => {
                let msg = format!("can't give argument to non-function {}", self.text(first.span));
                Err(self.err(first.span, msg))
            }
            _ => self.eval_arg(first, dot),
        }
    }

    fn eval_arg(&mut self, t: &'a Term, dot: &Val<'a>) -> ExecResult<Val<'a>> {
        match &t.kind {
            TermKind::Dot => Ok(dot.clone()),
            TermKind::Nil => Ok(Val::Ref(&NULL)),
            TermKind::Lit(v) => Ok(Val::Ref(v)),
            TermKind::Field(names) => self.eval_fields(dot.clone(), names, t.span),
            TermKind::Var(name, fields) => {
                let v = self.lookup(name, t.span)?;
                self.eval_fields(v, fields, t.span)
            }
            TermKind::Func(f) => self.call(*f, t.span, &[], None, dot),
            TermKind::Pipe(p) => self.eval_pipeline(p, dot),
            TermKind::Chain(base, fields) => {
                let v = self.eval_arg(base, dot)?;
                self.eval_fields(v, fields, t.span)
            }
        }
    }

    /// Follows a chain of field names from `v`.
    fn eval_fields(&mut self, mut v: Val<'a>, names: &'a [String], span: Span) -> ExecResult<Val<'a>> {
        for name in names {
            let found = match v.get() {
                Value::Null => {
                    // A field of nil is nil, however the nil was typed.
                    v = Val::Ref(&NULL);
                    continue;
                }
                Value::Object(m) => m.contains_key(name),
                other => {
                    let msg = format!("can't evaluate field {name} in type {}", short_type(other));
                    return Err(self.err(span, msg));
                }
            };
            if !found {
                return Err(self.err(span, format!("can't evaluate field {name} in type map")));
            }
            v = self.project(&v, |x| x.get(name.as_str()), span)?.unwrap_or(Val::Ref(&NULL));
        }
        Ok(v)
    }

    /// Calls a function with the given argument terms and piped value.
    fn call(
        &mut self,
        f: Func,
        span: Span,
        arg_terms: &'a [Term],
        fin: Option<Val<'a>>,
        dot: &Val<'a>,
    ) -> ExecResult<Val<'a>> {
        if matches!(f, Func::And | Func::Or) {
            // These stop evaluating their arguments once the result is known.
            if arg_terms.is_empty() && fin.is_none() {
                let msg = format!("wrong number of args for {}: want at least 1 got 0", f.name());
                return Err(self.err(span, msg));
            }
            let mut last = Val::Ref(&NULL);
            for t in arg_terms {
                let v = self.eval_arg(t, dot)?;
                if truth(v.get()) == (f == Func::Or) {
                    return Ok(v);
                }
                last = v;
            }
            return Ok(fin.unwrap_or(last));
        }
        let mut args = Vec::with_capacity(arg_terms.len() + 1);
        for t in arg_terms {
            args.push(self.eval_arg(t, dot)?);
        }
        if let Some(v) = fin {
            args.push(v);
        }
        self.builtin(f, &args, span)
    }

    fn str_arg<'v>(&self, v: &'v Val<'a>, span: Span) -> ExecResult<&'v str> {
        match v.get() {
            Value::String(s) => Ok(s),
            other => Err(self.err(span, format!("wrong type for value; expected string; got {}", go_type(other)))),
        }
    }

    fn builtin(&mut self, f: Func, args: &[Val<'a>], span: Span) -> ExecResult<Val<'a>> {
        let n = args.len();
        let (min, max) = f.arity();
        if n < min || max.is_some_and(|m| n > m) {
            let msg = match max {
                Some(m) if m == min => format!("wrong number of args for {}: want {min} got {n}", f.name()),
                _ => format!("wrong number of args for {}: want at least {min} got {n}", f.name()),
            };
            return Err(self.err(span, msg));
        }
        let calling = |msg: &str| format!("error calling {}: {msg}", f.name());
        match f {
            Func::Json => {
                let s = serde_json::to_string(&without_typed_nils(args[0].get()))
                    .map_err(|e| self.err(span, calling(&e.to_string())))?;
                self.string_result(s, FORMAT_COST, span)
            }
            Func::Index => self.index(args, span),
            Func::Len => {
                let len = match args[0].get() {
                    Value::String(s) => s.len(),
                    Value::Array(a) => a.len(),
                    Value::Object(m) => m.len(),
                    Value::Null => 0,
                    other => return Err(self.err(span, calling(&format!("len of type {}", go_type(other))))),
                };
                Ok(Val::own(Value::from(len)))
            }
            Func::Join => {
                let sep = self.str_arg(&args[1], span)?;
                let mut o = Out::new(MAX_OUTPUT);
                match args[0].get() {
                    Value::Array(items) => {
                        for (i, e) in items.iter().enumerate() {
                            if i > 0 {
                                o.push_str(sep);
                            }
                            print_top(&mut o, e);
                            if o.over {
                                return Err(
                                    self.err(span, calling(&format!("result exceeds the limit of {MAX_OUTPUT} bytes")))
                                );
                            }
                        }
                    }
                    Value::Null => {}
                    other => {
                        let msg = format!("wrong type for value; expected []string; got {}", go_type(other));
                        return Err(self.err(span, msg));
                    }
                }
                self.string_result(o.s, FORMAT_COST, span)
            }
            Func::Split => {
                let s = self.str_arg(&args[0], span)?;
                let sep = self.str_arg(&args[1], span)?;
                let items: Vec<Value> = if sep.is_empty() {
                    s.chars().take(MAX_ITEMS + 1).map(|c| Value::String(c.to_string())).collect()
                } else {
                    s.split(sep).take(MAX_ITEMS + 1).map(|p| Value::String(p.to_string())).collect()
                };
                if items.len() > MAX_ITEMS {
                    return Err(self.err(span, calling(&format!("more than {MAX_ITEMS} elements"))));
                }
                self.charge(s.len() + items.len() * 64, span)?;
                Ok(Val::own(Value::Array(items)))
            }
            Func::Lower | Func::Upper | Func::Title => {
                let s = self.str_arg(&args[0], span)?;
                let r = match f {
                    Func::Lower => s.to_lowercase(),
                    Func::Upper => s.to_uppercase(),
                    _ => title(s),
                };
                self.string_result(r, 1, span)
            }
            Func::Truncate => {
                let s = self.str_arg(&args[0], span)?;
                let len = match args[1].get() {
                    Value::Number(num) if num.as_i64().is_some() => num.as_i64().unwrap_or(0),
                    other => {
                        let msg = format!("wrong type for value; expected int; got {}", go_type(other));
                        return Err(self.err(span, msg));
                    }
                };
                let Ok(len) = usize::try_from(len) else {
                    return Err(self.err(span, calling(&format!("negative length {len}"))));
                };
                let r = match s.char_indices().nth(len) {
                    Some((i, _)) => s[..i].to_string(),
                    None => s.to_string(),
                };
                self.string_result(r, 1, span)
            }
            Func::Printf => {
                let format = self.str_arg(&args[0], span)?;
                let vals: Vec<&Value> = args[1..].iter().map(Val::raw).collect();
                match sprintf(format, &vals, MAX_OUTPUT) {
                    Some(s) => self.string_result(s, FORMAT_COST, span),
                    None => Err(self.err(span, calling(&format!("result exceeds the limit of {MAX_OUTPUT} bytes")))),
                }
            }
            Func::Print | Func::Println => {
                let mut o = Out::new(MAX_OUTPUT);
                let mut prev_string = false;
                for (i, a) in args.iter().enumerate() {
                    let is_string = matches!(a.get(), Value::String(_));
                    if i > 0 && (f == Func::Println || (!is_string && !prev_string)) {
                        o.push(' ');
                    }
                    fmt_arg(&mut o, a.raw(), 'v', &Spec::default(), false);
                    prev_string = is_string;
                }
                if f == Func::Println {
                    o.push('\n');
                }
                if o.over {
                    return Err(self.err(span, calling(&format!("result exceeds the limit of {MAX_OUTPUT} bytes"))));
                }
                self.string_result(o.s, FORMAT_COST, span)
            }
            Func::Eq | Func::Ne => {
                if n < 2 {
                    return Err(self.err(span, calling("missing argument for comparison")));
                }
                let mut result = false;
                for b in &args[1..] {
                    self.charge(compare_cost(args[0].get(), b.get()), span)?;
                    match go_eq(args[0].get(), b.get()) {
                        Ok(true) => {
                            result = true;
                            break;
                        }
                        Ok(false) => {}
                        Err(e) => return Err(self.err(span, calling(&e))),
                    }
                }
                Ok(Val::own(Value::Bool(if f == Func::Eq { result } else { !result })))
            }
            Func::Lt | Func::Le | Func::Gt | Func::Ge => {
                let (a, b) = (args[0].get(), args[1].get());
                self.charge(compare_cost(a, b), span)?;
                let ord = go_order(a, b).map_err(|e| self.err(span, calling(&e)))?;
                let r = match f {
                    Func::Lt => ord == Some(Ordering::Less),
                    Func::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                    Func::Gt => ord == Some(Ordering::Greater),
                    _ => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                };
                Ok(Val::own(Value::Bool(r)))
            }
            Func::Not => Ok(Val::own(Value::Bool(!truth(args[0].get())))),
            Func::And | Func::Or => {
                let want = f == Func::Or;
                Ok(args.iter().find(|a| truth(a.get()) == want).or(args.last()).cloned().unwrap_or(Val::Ref(&NULL)))
            }
        }
    }

    /// Go's `index`: objects by string key, arrays and strings by integer.
    fn index(&mut self, args: &[Val<'a>], span: Span) -> ExecResult<Val<'a>> {
        let mut item = args[0].clone();
        for ix in &args[1..] {
            let next = match item.get() {
                // A null item is a nil map or slice; looking into it finds nothing.
                Value::Null => return Ok(Val::empty_string()),
                Value::Array(a) => {
                    let k = self.index_arg(ix.get(), a.len(), span)?;
                    self.project(&item, |x| x.get(k), span)?
                }
                Value::String(s) => {
                    let k = self.index_arg(ix.get(), s.len(), span)?;
                    s.as_bytes().get(k).map(|&b| Val::own(Value::from(b)))
                }
                Value::Object(_) => {
                    let Value::String(key) = ix.get() else {
                        let msg =
                            format!("error calling index: value has type {}; should be string", go_type(ix.get()));
                        return Err(self.err(span, msg));
                    };
                    // A missing key yields an empty string, like a Go map[string]string.
                    Some(self.project(&item, |x| x.get(key.as_str()), span)?.unwrap_or_else(Val::empty_string))
                }
                other => {
                    let msg = format!("error calling index: can't index item of type {}", go_type(other));
                    return Err(self.err(span, msg));
                }
            };
            item = next.unwrap_or(Val::Ref(&NULL));
        }
        Ok(item)
    }

    fn index_arg(&self, ix: &Value, len: usize, span: Span) -> ExecResult<usize> {
        let x = match ix {
            Value::Number(n) if int_of(n).is_some() => int_of(n).unwrap_or(-1),
            Value::Null => return Err(self.err(span, "error calling index: cannot index slice/array with nil")),
            other => {
                let msg = format!("error calling index: cannot index slice/array with type {}", go_type(other));
                return Err(self.err(span, msg));
            }
        };
        match usize::try_from(x) {
            Ok(k) if k < len => Ok(k),
            _ => Err(self.err(span, format!("error calling index: index out of range: {x}"))),
        }
    }
}

/// Go's notion of truth: false, zero, empty and nil are false.
fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => match int_of(n) {
            Some(i) => i != 0,
            None => n.as_f64().is_some_and(|f| f != 0.0),
        },
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A short type name for field errors, e.g. `can't evaluate field X in type slice`.
fn short_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
        other => go_type(other),
    }
}

fn compare_cost(a: &Value, b: &Value) -> usize {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.len().min(y.len()),
        _ => 1,
    }
}

fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (int_of(a), int_of(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Go's `eq` for one pair of arguments.
fn go_eq(a: &Value, b: &Value) -> Result<bool, String> {
    match (a, b) {
        (Value::Null, Value::Null) => Ok(true),
        (Value::Null, _) | (_, Value::Null) => Ok(false),
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        (Value::Number(x), Value::Number(y)) => Ok(num_cmp(x, y) == Some(Ordering::Equal)),
        (Value::String(x), Value::String(y)) => Ok(x == y),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            Err(format!("non-comparable type {}", go_type(a)))
        }
        _ => Err("incompatible types for comparison".to_string()),
    }
}

/// Orders two values for `lt`, `le`, `gt` and `ge`.
fn go_order(a: &Value, b: &Value) -> Result<Option<Ordering>, String> {
    let basic = |v: &Value| matches!(v, Value::Bool(_) | Value::Number(_) | Value::String(_));
    if !basic(a) || !basic(b) {
        return Err("invalid type for comparison".to_string());
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Ok(num_cmp(x, y)),
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Bool(_), Value::Bool(_)) => Err("invalid type for comparison".to_string()),
        _ => Err("incompatible types for comparison".to_string()),
    }
}

/// Go's `strings.Title`: upper-cases the first letter of every word.
fn title(s: &str) -> String {
    let is_separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphabetic() || c.is_numeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if is_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}
