//! Tests of the whole crate through its public functions: rendering,
//! errors, limits, and properties over random templates.

use super::*;
use proptest::prelude::*;

/// Data shaped like the output of `img inspect`.
const DATA: &str = r#"{
    "Id": "sha256:abc123",
    "RepoTags": ["alpine:3.19", "alpine:latest"],
    "RepoDigests": [],
    "Os": "linux",
    "Architecture": "amd64",
    "Size": 7340032,
    "Ratio": 1.5,
    "Big": 1e21,
    "Small": 0.00001,
    "Million": 1000000.0,
    "Neg": -3,
    "Zero": 0,
    "FZero": 0.0,
    "T": true,
    "F": false,
    "Nothing": null,
    "Empty": "",
    "EmptyMap": {},
    "Name": "héllo wörld",
    "Config": {
        "Env": ["PATH=/bin", "A=b"],
        "Cmd": null,
        "Labels": {"k": "v", "maintainer": "me", "a.b": "dotted"},
        "User": ""
    },
    "Nested": [[1, 2], [3]],
    "Mixed": [1, "a", null, true, {"x": 1}, 2.5],
    "Layers": [{"Digest": "d1", "Size": 10}, {"Digest": "d2", "Size": 20}],
    "Ports": {"80/tcp": [{"HostPort": "8080"}], "443/tcp": null}
}"#;

fn data(json: &str) -> Value {
    serde_json::from_str(json).expect("test JSON is valid")
}

/// Renders `tmpl` over `json` (the fixture when empty) and compares.
fn check(tmpl: &str, json: &str, want: &str) {
    let d = data(if json.is_empty() { DATA } else { json });
    match render(tmpl, &d) {
        Ok(got) => assert_eq!(got, want, "template {tmpl:?}"),
        Err(e) => panic!("template {tmpl:?} failed: {e}"),
    }
}

/// Renders `tmpl` and expects an error whose message contains `needle`.
fn check_err(tmpl: &str, json: &str, needle: &str) -> TemplateError {
    let d = data(if json.is_empty() { DATA } else { json });
    match render(tmpl, &d) {
        Ok(got) => panic!("template {tmpl:?} rendered {got:?}, want an error containing {needle:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "template {tmpl:?}: error {msg:?} lacks {needle:?}");
            assert!(msg.starts_with("template: "), "error {msg:?} is not in Go's style");
            assert!(!msg.ends_with('.'), "error {msg:?} ends with a period");
            e
        }
    }
}

#[test]
fn fields_and_printing() {
    check("{{.Id}}", "", "sha256:abc123");
    check("id={{.Id}}!", "", "id=sha256:abc123!");
    check("{{.Config.Env}}", "", "[PATH=/bin A=b]");
    check("{{.RepoTags}}", "", "[alpine:3.19 alpine:latest]");
    check("{{.RepoDigests}}", "", "[]");
    check("{{.Size}}", "", "7340032");
    check("{{.Neg}}", "", "-3");
    check("{{.Ratio}}", "", "1.5");
    check("{{.Big}}", "", "1e+21");
    check("{{.Small}}", "", "1e-05");
    check("{{.Million}}", "", "1e+06");
    check("{{.FZero}}", "", "0");
    check("{{.T}} {{.F}}", "", "true false");
    check("{{.Nothing}}", "", "<no value>");
    check("{{.Config.Cmd}}", "", "<no value>");
    check("{{.Nothing.Deeper}}", "", "<no value>");
    check("{{.Config.Labels}}", "", "map[a.b:dotted k:v maintainer:me]");
    check("{{.EmptyMap}}", "", "map[]");
    check("{{.Nested}}", "", "[[1 2] [3]]");
    check("{{.Mixed}}", "", "[1 a <nil> true map[x:1] 2.5]");
    check("{{.Ports}}", "", "map[443/tcp:<nil> 80/tcp:[map[HostPort:8080]]]");
    check("{{.}}", r#""plain""#, "plain");
    check("{{.}}", "null", "<no value>");
    check("{{.Name}}", "", "héllo wörld");
    check("{{(.Config).Env}}", "", "[PATH=/bin A=b]");
    check("{{(index .Layers 1).Digest}}", "", "d2");
    check("{{$.Id}}", "", "sha256:abc123");
    check("{{$}}", r#"[1,2]"#, "[1 2]");
}

#[test]
fn go_print_rules() {
    assert_eq!(go_print(&data("null")), "<no value>");
    assert_eq!(go_print(&data("[null]")), "[<nil>]");
    assert_eq!(go_print(&data("12")), "12");
    assert_eq!(go_print(&data("-12")), "-12");
    assert_eq!(go_print(&data("18446744073709551615")), "18446744073709551615");
    assert_eq!(go_print(&data("1.5")), "1.5");
    assert_eq!(go_print(&data("3.0")), "3");
    assert_eq!(go_print(&data("100000.0")), "100000");
    assert_eq!(go_print(&data("1234567.0")), "1.234567e+06");
    assert_eq!(go_print(&data("0.0001")), "0.0001");
    assert_eq!(go_print(&data("1e21")), "1e+21");
    assert_eq!(go_print(&data("-2.5e-7")), "-2.5e-07");
    assert_eq!(go_print(&data("1.5e300")), "1.5e+300");
    assert_eq!(go_print(&data("0.1")), "0.1");
    assert_eq!(go_print(&data(r#"{"b":[1,{"c":null}],"a":"x y"}"#)), "map[a:x y b:[1 map[c:<nil>]]]");
    assert_eq!(go_print(&data("[[],{}]")), "[[] map[]]");
    assert_eq!(go_print(&data("true")), "true");
}

#[test]
fn json_function() {
    check(
        "{{json .Config}}",
        "",
        r#"{"Cmd":null,"Env":["PATH=/bin","A=b"],"Labels":{"a.b":"dotted","k":"v","maintainer":"me"},"User":""}"#,
    );
    check("{{json .RepoTags}}", "", r#"["alpine:3.19","alpine:latest"]"#);
    check("{{json .Id}}", "", r#""sha256:abc123""#);
    check("{{json .Nothing}}", "", "null");
    check("{{.RepoTags | json}}", "", r#"["alpine:3.19","alpine:latest"]"#);
    check("{{json .}}", r#"{"a":"<&>"}"#, r#"{"a":"<&>"}"#);
}

#[test]
fn index_function() {
    check(r#"{{index .Config.Labels "k"}}"#, "", "v");
    check(r#"{{index .Config.Labels "a.b"}}"#, "", "dotted");
    check(r#"[{{index .Config.Labels "missing"}}]"#, "", "[]");
    check(r#"{{index .RepoTags 1}}"#, "", "alpine:latest");
    check(r#"{{index .Nested 0 1}}"#, "", "2");
    check(r#"{{index .Ports "80/tcp" 0 "HostPort"}}"#, "", "8080");
    check(r#"[{{index .Config.Cmd "x"}}]"#, "", "[]");
    check(r#"{{index .Id 0}}"#, "", "115");
    check(r#"{{len (index .Config.Labels "a")}}"#, "", "0");
    check(r#"{{with index .Config.Labels "k"}}got {{.}}{{end}}"#, "", "got v");
    check(r#"{{$l := .Config.Labels}}{{index $l "maintainer"}}"#, "", "me");
    let e = check_err("{{index .RepoTags 5}}", "", "index out of range: 5");
    assert!(e.to_string().contains("at <index .RepoTags 5>"), "{e}");
    check_err("{{index .RepoTags -1}}", "", "index out of range: -1");
    check_err(r#"{{index .RepoTags "a"}}"#, "", "cannot index slice/array with type string");
    check_err("{{index .Config.Labels 1}}", "", "value has type int; should be string");
    check_err("{{index .Size 1}}", "", "can't index item of type int");
}

#[test]
fn range_and_variables() {
    check("{{range .RepoTags}}{{.}} {{end}}", "", "alpine:3.19 alpine:latest ");
    check("{{range $i, $t := .RepoTags}}{{$i}}={{$t}};{{end}}", "", "0=alpine:3.19;1=alpine:latest;");
    check("{{range $t := .RepoTags}}<{{$t}}>{{end}}", "", "<alpine:3.19><alpine:latest>");
    check("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}", "", "a.b=dotted,k=v,maintainer=me,");
    check("{{range .Config.Labels}}{{.}} {{end}}", "", "dotted v me ");
    check("{{range .RepoDigests}}x{{else}}none{{end}}", "", "none");
    check("{{range .Nothing}}x{{else}}nil{{end}}", "", "nil");
    check("{{range .EmptyMap}}x{{else}}empty{{end}}", "", "empty");
    check("{{range .Layers}}{{.Digest}}:{{.Size}} {{end}}", "", "d1:10 d2:20 ");
    check("{{range .Layers}}{{$.Id}}/{{.Digest}} {{end}}", "", "sha256:abc123/d1 sha256:abc123/d2 ");
    check(
        "{{range $l := .Layers}}{{range $.RepoTags}}{{$l.Digest}}@{{.}} {{end}}{{end}}",
        "",
        "d1@alpine:3.19 d1@alpine:latest d2@alpine:3.19 d2@alpine:latest ",
    );
    check("{{range .Nested}}[{{range .}}{{.}}{{end}}]{{end}}", "", "[12][3]");
    check("{{range $i, $e := .Nested}}{{range $j, $x := $e}}{{$i}}{{$j}}{{$x}} {{end}}{{end}}", "", "001 012 103 ");
    check("{{range 3}}{{.}}{{end}}", "", "012");
    check("{{range .RepoTags}}{{if eq . \"alpine:latest\"}}{{break}}{{end}}{{.}}{{end}}", "", "alpine:3.19");
    check("{{range .RepoTags}}{{if eq . \"alpine:3.19\"}}{{continue}}{{end}}{{.}}{{end}}", "", "alpine:latest");
    check("{{range .Nested}}{{range .}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}};{{end}}", "", "1;3;");
    check("{{$x := .Os}}{{$x}}", "", "linux");
    check("{{$x := 1}}{{$x = 2}}{{$x}}", "", "2");
    check("{{$x:=1}}{{$x}}", "", "1");
    check("{{$x := 0}}{{range .RepoTags}}{{$x = .}}{{end}}{{$x}}", "", "alpine:latest");
    check("{{$x := .Config}}{{$x.Env}} {{$x.Labels.k}}", "", "[PATH=/bin A=b] v");
    check("{{with $c := .Config}}{{$c.User}}|{{.Labels.k}}{{end}}", "", "|v");
    check("{{if $v := .Os}}{{$v}}{{end}}", "", "linux");
    check("{{range $i, $e := .RepoTags}}{{$x := $i}}{{$x}}{{end}}", "", "01");
}

#[test]
fn conditionals() {
    check("{{if .Config.Labels}}yes{{else}}no{{end}}", "", "yes");
    check("{{if .EmptyMap}}yes{{else}}no{{end}}", "", "no");
    check("{{if .RepoDigests}}yes{{else}}no{{end}}", "", "no");
    check("{{if .Zero}}yes{{else}}no{{end}}", "", "no");
    check("{{if .FZero}}yes{{else}}no{{end}}", "", "no");
    check("{{if .Empty}}yes{{else}}no{{end}}", "", "no");
    check("{{if .Nothing}}yes{{else}}no{{end}}", "", "no");
    check("{{if .F}}yes{{else}}no{{end}}", "", "no");
    check("{{if .T}}yes{{end}}", "", "yes");
    check("{{if .Neg}}yes{{end}}", "", "yes");
    check("{{if .Ratio}}yes{{end}}", "", "yes");
    check(r#"{{if eq .Os "windows"}}w{{else if eq .Os "linux"}}l{{else}}o{{end}}"#, "", "l");
    check(r#"{{if eq .Os "x"}}1{{else if eq .Os "y"}}2{{else}}3{{end}}"#, "", "3");
    check(r#"{{if (eq .Os "linux")}}L{{end}}"#, "", "L");
    check("{{with .Config}}{{.User}}|{{.Labels.k}}{{end}}", "", "|v");
    check("{{with .Config.User}}u{{else}}no user{{end}}", "", "no user");
    check("{{with .Nothing}}x{{else with .Os}}{{.}}{{end}}", "", "linux");
    check("{{if not .F}}negated{{end}}", "", "negated");
    check("{{if and .T .Os}}both{{end}}", "", "both");
    check("{{if or .F .Zero}}x{{else}}neither{{end}}", "", "neither");
}

#[test]
fn logic_functions() {
    check("{{and 1 0 2}}", "", "0");
    check("{{and 1 2}}", "", "2");
    check("{{or 0 \"\" \"x\"}}", "", "x");
    check("{{or 0 false}}", "", "false");
    check("{{not 0}} {{not 1}}", "", "true false");
    // Evaluation stops at the deciding argument, so the bad index is never reached.
    check("{{and .F (index .RepoTags 9)}}", "", "false");
    check("{{or .T (index .RepoTags 9)}}", "", "true");
    check("{{.F | and .T}}", "", "false");
}

#[test]
fn comparisons() {
    check("{{eq .Os \"linux\"}}", "", "true");
    check("{{eq .Os \"a\" \"b\" \"linux\"}}", "", "true");
    check("{{eq .Os \"a\" \"b\"}}", "", "false");
    check("{{ne .Os \"linux\"}}", "", "false");
    check("{{eq .Size 7340032}}", "", "true");
    check("{{eq .Ratio 1.5}}", "", "true");
    check("{{eq 3 3.0}}", "", "true");
    check("{{eq .Nothing nil}}", "", "true");
    check("{{eq .Os nil}}", "", "false");
    check("{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 2 3}}", "", "true true false false");
    check("{{lt \"a\" \"b\"}} {{gt \"b\" \"a\"}}", "", "true true");
    check("{{lt .Neg 0}}", "", "true");
    check("{{lt 1 1.5}}", "", "true");
    check("{{gt .Size 1000}}", "", "true");
    check("{{eq .T true}}", "", "true");
    check_err("{{eq .Os 1}}", "", "incompatible types for comparison");
    check_err("{{lt .T .F}}", "", "invalid type for comparison");
    check_err("{{lt .RepoTags 1}}", "", "invalid type for comparison");
    check_err("{{eq .RepoTags .RepoTags}}", "", "non-comparable type");
    check_err("{{eq .Os}}", "", "missing argument for comparison");
}

#[test]
fn string_functions() {
    check("{{join .RepoTags \",\"}}", "", "alpine:3.19,alpine:latest");
    check("{{join .Config.Env \"\\n\"}}", "", "PATH=/bin\nA=b");
    check("{{join .Nested \"; \"}}", "", "[1 2]; [3]");
    check("{{join .RepoDigests \",\"}}", "", "");
    check("{{join (split \"a:b:c\" \":\") \"-\"}}", "", "a-b-c");
    check("{{split .Id \":\"}}", "", "[sha256 abc123]");
    check("{{len (split \"abc\" \"\")}}", "", "3");
    check("{{index (split .Id \":\") 1}}", "", "abc123");
    check("{{range split \"x,y\" \",\"}}<{{.}}>{{end}}", "", "<x><y>");
    check("{{lower \"HeLLo\"}} {{upper .Os}}", "", "hello LINUX");
    check("{{title \"hello wide-world foo_bar\"}}", "", "Hello Wide-World Foo_bar");
    check("{{truncate .Id 6}}", "", "sha256");
    check("{{truncate .Id 100}}", "", "sha256:abc123");
    check("{{truncate .Name 3}}", "", "hél");
    check("{{truncate .Id 6 | upper}}", "", "SHA256");
    check("{{len .Id}} {{len .RepoTags}} {{len .Config.Labels}} {{len .Nothing}}", "", "13 2 3 0");
    check("{{len .Name}}", "", "13");
    check_err("{{len .Size}}", "", "len of type int");
    check_err("{{lower .Size}}", "", "wrong type for value; expected string; got int");
    check_err("{{join .Os \",\"}}", "", "expected []string");
}

#[test]
fn printf_and_print() {
    check(r#"{{printf "%s" .Os}}"#, "", "linux");
    check(r#"{{printf "%-10s|" .Os}}"#, "", "linux     |");
    check(r#"{{printf "%10s|" .Os}}"#, "", "     linux|");
    check(r#"{{printf "%-20s%s" .Os .Architecture}}"#, "", "linux               amd64");
    check(r#"{{printf "%5d|%-5d|%05d" 42 42 -42}}"#, "", "   42|42   |-0042");
    check(r#"{{printf "%d" .Size}}"#, "", "7340032");
    check(
        r#"{{printf "%v %v %v" .RepoTags .Config.Labels .Nothing}}"#,
        "",
        "[alpine:3.19 alpine:latest] map[a.b:dotted k:v maintainer:me] <nil>",
    );
    check(r#"{{printf "%q" .Os}}"#, "", r#""linux""#);
    check(r#"{{printf "%q" "a\"b\n"}}"#, "", r#""a\"b\n""#);
    check(r#"{{printf "%q" .RepoTags}}"#, "", r#"["alpine:3.19" "alpine:latest"]"#);
    check(r#"{{printf "%t %t" .T .F}}"#, "", "true false");
    check(r#"{{printf "%x %X %x" 255 255 "hi"}}"#, "", "ff FF 6869");
    check(r#"{{printf "%#x %o %b" 255 8 5}}"#, "", "0xff 10 101");
    check(r#"{{printf "%f %.2f %8.3f|" .Ratio .Ratio .Ratio}}"#, "", "1.500000 1.50    1.500|");
    check(r#"{{printf "%.1f" .Size}}"#, "", "7340032.0");
    check(r#"{{printf "%e %g %g" .Ratio .Big 0.000012345}}"#, "", "1.500000e+00 1e+21 1.2345e-05");
    check(r#"{{printf "%.3g %.3g" 1234.5678 1.0}}"#, "", "1.23e+03 1");
    check(r#"{{printf "%+d % d" 5 5}}"#, "", "+5  5");
    check(r#"{{len (printf "%.100000f|%.100000e|%.100000g" 1.5 1.5 1.5)}}"#, "", "200013");
    check(r#"{{printf "%.1200f" 0.1 | len}}"#, "", "1202");
    check(r#"{{printf "%%|%c|%U" 65 65}}"#, "", "%|A|U+0041");
    check(r#"{{printf "%.3s" .Id}}"#, "", "sha");
    check(r#"{{printf "%*d|%-*d|" 4 7 3 8}}"#, "", "   7|8  |");
    check(r#"{{printf "%d" .Os}}"#, "", "%!d(string=linux)");
    check(r#"{{printf "%s" .Size}}"#, "", "%!s(int=7340032)");
    check(r#"{{printf "%s %s" .Os}}"#, "", "linux %!s(MISSING)");
    check(r#"{{printf "%s" .Os .Size}}"#, "", "linux%!(EXTRA int=7340032)");
    check(r#"{{printf "%s" .Nothing}}"#, "", "%!s(<nil>)");
    check(r#"{{printf "%T %T %T %T" .Os .Size .Ratio .RepoTags}}"#, "", "string int float64 []interface {}");
    check(r#"{{printf "abc%"}}"#, "", "abc%!(NOVERB)");
    check(r#"{{.Os | printf "os=%s"}}"#, "", "os=linux");
    check(r#"{{.Os | printf "%s-%s" .Architecture}}"#, "", "amd64-linux");
    check(r#"{{print "a" "b" 1 2 "c"}}"#, "", "ab1 2c");
    check(r#"{{print .Nothing}}"#, "", "<nil>");
    check(r#"{{println "a" 1}}"#, "", "a 1\n");
    check(r#"{{print}}"#, "", "");
}

#[test]
fn literals() {
    check(r#"{{"a\tb\x41\u00e9\101"}}"#, "", "a\tbAéA");
    check("{{`raw\\n{{x}}`}}", "", "raw\\n{{x}}");
    check("{{'a'}} {{'\\n'}}", "", "97 10");
    check("{{42}} {{-7}} {{+3}} {{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}}", "", "42 -7 3 31 15 15 5 1000");
    check("{{1.5}} {{1e3}} {{1e6}} {{.5}}", "", "1.5 1000 1e+06 0.5");
    check("{{true}} {{false}}", "", "true false");
    check(r#"{{"}}"}}"#, "", "}}");
    check("a}}b", "", "a}}b");
    check("{{ .Id }}", "", "sha256:abc123");
}

#[test]
fn trim_markers_and_comments() {
    check("a  {{- .Os -}}  b", "", "alinuxb");
    check("a \n\t{{- .Os}} b", "", "alinux b");
    check("a {{.Os -}} \n b", "", "a linuxb");
    check("{{range .RepoTags -}}\n  {{.}}\n{{- end}}", "", "alpine:3.19alpine:latest");
    check("x{{/* a comment with }} inside */}}y", "", "xy");
    check("x {{- /* trimmed */ -}} y", "", "xy");
    check("{{-3}}", "", "-3");
    check("a\n{{- \"b\" -}}\nc", "", "abc");
}

#[test]
fn pipelines() {
    check("{{.Config.Env | len}}", "", "2");
    check("{{.Os | upper | printf \"%s!\"}}", "", "LINUX!");
    check("{{len (index .Layers 0).Digest}}", "", "2");
    check("{{(len .RepoTags)}}", "", "2");
    check("{{$n := len .RepoTags}}{{printf \"%d tags\" $n}}", "", "2 tags");
    check("{{if (and (eq .Os \"linux\") (gt .Size 0))}}ok{{end}}", "", "ok");
}

#[test]
fn execution_errors_name_the_culprit() {
    let e = check_err("{{.Confg}}", "", "can't evaluate field Confg");
    assert_eq!(e.to_string(), "template: :1:2: executing \"\" at <.Confg>: can't evaluate field Confg in type map");
    check_err("{{.Config.Lables.k}}", "", "can't evaluate field Lables");
    check_err("x\n  {{.Config.Missing}}", "", "template: :2:4:");
    check_err("{{range .Layers}}{{.Digst}}{{end}}", "", "can't evaluate field Digst");
    check_err("{{.Id.Foo}}", "", "can't evaluate field Foo in type string");
    check_err("{{.RepoTags.Foo}}", "", "can't evaluate field Foo in type slice");
    check_err("{{$x := .Config}}{{$x.Nope}}", "", "can't evaluate field Nope");
    check_err("{{len 1 2}}", "", "wrong number of args for len: want 1 got 2");
    check_err("{{printf}}", "", "wrong number of args for printf: want at least 1 got 0");
    check_err("{{.Os 1}}", "", "Os is not a method but has arguments");
    check_err("{{.Os | .Id}}", "", "Id is not a method but has arguments");
    check_err("{{nil}}", "", "nil is not a command");
    check_err("{{range .Os}}{{end}}", "", "range can't iterate over linux");
    check_err("{{truncate .Id -1}}", "", "negative length");
    check_err("{{.Id | truncate 6}}", "", "expected string; got int");
}

#[test]
fn parse_errors() {
    let e = check_err("{{.Id", "", "unclosed action");
    assert_eq!(e.to_string(), "template: :1: unclosed action");
    check_err("{{.Id\n", "", "template: :2: unclosed action started at :1");
    let e = check_err("{{.Id}", "", "unexpected \"}\" in operand");
    assert_eq!(e.to_string(), "template: :1: unexpected \"}\" in operand");
    let e = check_err("{{nosuch .Id}}", "", "function \"nosuch\" not defined");
    assert_eq!(e.to_string(), "template: :1: function \"nosuch\" not defined");
    check_err("{{table .Id}}", "", "function \"table\" not defined");
    check_err("{{if .Id}}x", "", "unexpected EOF");
    check_err("{{end}}", "", "unexpected {{end}}");
    check_err("{{else}}", "", "unexpected {{else}}");
    check_err("{{if 1}}{{else}}{{else}}{{end}}", "", "expected end; found {{else}}");
    check_err("{{$x}}", "", "undefined variable \"$x\"");
    check_err("{{$x = 1}}", "", "undefined variable \"$x\"");
    check_err("{{if 1}}{{$y := 1}}{{end}}{{$y}}", "", "undefined variable \"$y\"");
    check_err("{{break}}", "", "{{break}} outside {{range}}");
    check_err("{{continue}}", "", "{{continue}} outside {{range}}");
    check_err("{{range .X}}{{else}}{{break}}{{end}}", "", "{{break}} outside {{range}}");
    check_err("{{}}", "", "missing value for command");
    check_err("{{if}}{{end}}", "", "missing value for if");
    check_err("{{.Id | }}", "", "missing command after");
    check_err("{{.Id | \"x\"}}", "", "non executable command in pipeline stage 2");
    check_err("{{\"unterminated}}", "", "unterminated quoted string");
    check_err("{{`raw}}", "", "unterminated raw quoted string");
    check_err("{{\"bad \\q\"}}", "", "invalid syntax in string literal");
    check_err("{{1x}}", "", "bad number syntax: \"1x\"");
    check_err("{{(.Id}}", "", "unclosed left paren");
    check_err("{{.Id)}}", "", "unexpected right paren");
    check_err("{{/* open", "", "unclosed comment");
    check_err("{{/* c */ .Id}}", "", "comment ends before closing delimiter");
    check_err("{{.Id @}}", "", "unexpected \"@\" in operand");
    check_err("{{$x=1}}", "", "bad character U+003D '='");
    check_err("{{.Id€}}", "", "bad character");
    check_err("{{1 .Id}}", "", "can't give argument to non-function 1");
    check_err("{{\"a\".Foo}}", "", "unexpected . after term");
    check_err("{{template \"x\"}}", "", "{{template}} actions are not supported");
    check_err("{{range .RepoTags}}{{else if .X}}{{end}}", "", "unexpected <if> in else");
    check_err("{{$a, $b := .X}}", "", "too many declarations in command");
    check_err("{{if 1}}\n\n{{nosuch}}{{end}}", "", "template: :3: function");
}

#[test]
fn nesting_is_limited() {
    let ok = format!("{}x{}", "{{if 1}}".repeat(MAX_DEPTH), "{{end}}".repeat(MAX_DEPTH));
    check(&ok, "{}", "x");
    let deep = format!("{}x{}", "{{if 1}}".repeat(10_000), "{{end}}".repeat(10_000));
    check_err(&deep, "{}", "nested too deeply");
    let parens = format!("{{{{{}1{}}}}}", "(".repeat(10_000), ")".repeat(10_000));
    check_err(&parens, "{}", "nested too deeply");
    let ranges = format!("{}{}", "{{range .}}".repeat(10_000), "{{end}}".repeat(10_000));
    check_err(&ranges, "[]", "nested too deeply");
    // A long flat else-if chain is not nesting.
    let chain = format!("{{{{if 0}}}}{}{{{{else}}}}z{{{{end}}}}", "{{else if 0}}".repeat(5_000));
    check(&chain, "{}", "z");
}

#[test]
fn execution_is_bounded() {
    check_err("{{range 2000000}}{{end}}", "{}", "range iterations exceeded");
    check_err("{{range 1000}}{{range 1000}}{{range 1000}}{{end}}{{end}}{{end}}", "{}", "range iterations exceeded");
    let text = format!("{{{{range 100000}}}}{}{{{{end}}}}", "x".repeat(1000));
    check_err(&text, "{}", "output exceeds the limit");
    check_err(r#"{{range 100000}}{{printf "%1000d" 1}}{{end}}"#, "{}", "bytes of work");
    check_err(r#"{{$s := "ab"}}{{range 64}}{{$s = printf "%s%s" $s $s}}{{end}}"#, "{}", "limit");
    check_err(r#"{{printf "%10000000d%10000000d" 1 2}}"#, "{}", "result exceeds the limit");
    // Go refuses absurd widths rather than padding.
    check(r#"{{printf "%99999999999d" 1}}"#, "{}", "%!(NOVERB)%!(EXTRA int=1)");
}

#[test]
fn steps_are_limited() {
    // Twenty thousand cheap actions, a thousand times over, pass the step
    // limit long before the iteration limit.
    let t = format!("{{{{range 1000}}}}{}{{{{end}}}}", "{{if 0}}{{end}}".repeat(20_000));
    check_err(&t, "{}", "exceeded the limit of 10000000 steps");
}

#[test]
fn template_is_reusable() {
    let t = Template::parse("{{.Name}}={{.Size}}").expect("parses");
    assert_eq!(t.execute(&data(r#"{"Name":"a","Size":1}"#)).expect("runs"), "a=1");
    assert_eq!(t.execute(&data(r#"{"Name":"b","Size":2}"#)).expect("runs"), "b=2");
    assert!(t.execute(&data(r#"{"Name":"c"}"#)).is_err());
}

/// Fragments from which random templates are assembled.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("{{- ".to_string()),
        Just(" -}}".to_string()),
        Just("{{end}}".to_string()),
        Just("{{else}}".to_string()),
        Just("{{range .}}".to_string()),
        Just("{{if .A}}".to_string()),
        Just("{{with $x := .B}}".to_string()),
        Just("{{break}}".to_string()),
        Just(".A".to_string()),
        Just("$".to_string()),
        Just("$x".to_string()),
        Just(" | ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("\"".to_string()),
        Just("`".to_string()),
        Just("'".to_string()),
        Just("/*".to_string()),
        Just("*/".to_string()),
        Just(" printf \"%-5d%q%v%".to_string()),
        Just(" index ".to_string()),
        Just(" 1 ".to_string()),
        Just("-".to_string()),
        Just(":=".to_string()),
        Just(" = ".to_string()),
        Just(", ".to_string()),
        prop::sample::select(vec![
            " len ",
            " json ",
            " split ",
            " join ",
            " truncate ",
            " eq ",
            " lt ",
            " ge ",
            " and ",
            " or ",
            " not ",
            " title ",
            " upper ",
            " print ",
            " println ",
            " index $.A ",
            " .B.c ",
            " $.C ",
            " nil ",
            " true ",
            " -1 ",
            " 99999999999999999999 ",
            " 1e400 ",
            " 0x1p3 ",
            " 2.5 ",
            " '\\x41' ",
            " \"\" ",
            " \"%*.*d%-08.3x%#q%[1]d%!\" ",
            " \"\\u12\" ",
            " `a\rb` ",
            "{{range $i, $e := .A}}",
            "{{else if .C}}",
            "{{continue}}",
            "{{$x := 3}}",
            "{{else with .B}}",
            "{{range 5}}",
        ])
        .prop_map(str::to_string),
        any::<String>(),
        "[ -~]{0,8}",
    ]
}

proptest! {
    #[test]
    fn render_never_panics(parts in prop::collection::vec(fragment(), 0..40)) {
        let d = data(r#"{"A":[1,"x",null,{"B":2.5}],"B":{"c":"d"},"C":""}"#);
        let _ = render(&parts.concat(), &d);
    }

    #[test]
    fn render_never_panics_on_any_string(s in any::<String>()) {
        let _ = render(&s, &data(DATA));
    }

    #[test]
    fn text_without_actions_is_unchanged(s in any::<String>().prop_filter("no action", |s| !s.contains("{{"))) {
        prop_assert_eq!(render(&s, &data(DATA)).expect("plain text renders"), s);
    }

    #[test]
    fn nesting_depth_is_checked(n in 0usize..300) {
        let t = format!("{}x{}", "{{with .}}".repeat(n), "{{end}}".repeat(n));
        let r = render(&t, &data("{}"));
        prop_assert_eq!(r.is_ok(), n <= MAX_DEPTH);
    }

    #[test]
    fn integers_print_exactly(i in any::<i64>()) {
        prop_assert_eq!(go_print(&Value::from(i)), i.to_string());
        prop_assert_eq!(render("{{printf \"%d\" .}}", &Value::from(i)).expect("renders"), i.to_string());
    }

    #[test]
    fn floats_print_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let s = go_print(&Value::from(f));
        let back: f64 = s.parse().expect("Go's float output parses");
        prop_assert_eq!(back, f);
    }
}

#[test]
fn typed_nils_print_as_go_prints_them() {
    let data = serde_json::json!({
        "S": typed_nil(Nil::Slice), "M": typed_nil(Nil::Map), "P": typed_nil(Nil::Pointer),
        "Nested": {"E": typed_nil(Nil::Slice), "X": 1},
    });
    let r = |src: &str| render(src, &data).unwrap();
    assert_eq!(r("{{.S}} {{.M}} {{.P}}"), "[] map[] <nil>");
    assert_eq!(r("{{json .S}} {{json .M}} {{json .P}} {{json .Nested}}"), r#"null null null {"E":null,"X":1}"#);
    assert_eq!(r("{{.Nested}}"), "map[E:[] X:1]");
    assert_eq!(
        r("{{len .S}} {{len .M}} {{if .S}}yes{{else}}no{{end}} {{range .S}}x{{else}}empty{{end}}"),
        "0 0 no empty"
    );
    assert_eq!(r("{{.M.Anything}}|{{index .M \"k\"}}|{{printf \"%v\" .S}}|{{print .M}}"), "<no value>||[]|map[]");
    assert_eq!(r("{{with .P}}set{{else}}nil{{end}} {{eq .S nil}}"), "nil true");
    assert_eq!(without_typed_nils(&data).into_owned()["Nested"], serde_json::json!({"E": null, "X": 1}));
    // Only the exact shape is a typed nil.
    let other = serde_json::json!({"\u{0}nil": "slice", "k": 1});
    assert_eq!(render("{{json .}}", &other).unwrap(), r#"{"\u0000nil":"slice","k":1}"#);
}
