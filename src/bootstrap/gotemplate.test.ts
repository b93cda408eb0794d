import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GoEnum, GoStruct, goSprintf, jsEscape, renderGoTemplate, TemplateError } from './gotemplate.js';

const r = (src: string, data: unknown = {}): string => renderGoTemplate(src, data);

void describe('Go text/template engine', () => {
  void it('prints fields, variables and missing keys like Go', () => {
    assert.equal(r('{{ .a }}/{{ .b.c }}/{{ .missing }}/{{ $.a }}', { a: 1, b: { c: 'x' } }), '1/x/<no value>/1');
    assert.equal(r('{{ .l }} {{ .m }} {{ .t }} {{ .n }}', { l: [1, 'a'], m: { b: 2, a: 1 }, t: true, n: null }), '[1 a] map[a:1 b:2] true <nil>');
    assert.equal(r('{{ 1.5 }} {{ 0x10 }} {{ "q\\n" }} {{ `raw` }} {{ \'a\' }}'), '1.5 16 q\n raw 97');
  });

  void it('trims whitespace around {{- and -}} and skips comments', () => {
    assert.equal(r('a  \n {{- .x -}} \n  b {{/* note */}}c', { x: 'X' }), 'aXb c');
    assert.equal(r('{{- /* only a comment */ -}}\n  x'), 'x');
  });

  void it('evaluates if / else if / else with Go truthiness', () => {
    const t = '{{ if .a }}A{{ else if .b }}B{{ else }}C{{ end }}';
    assert.equal(r(t, { a: 1 }), 'A');
    assert.equal(r(t, { a: 0, b: 'x' }), 'B');
    assert.equal(r(t, { a: [], b: {} }), 'C');
    assert.equal(r(t, {}), 'C');
    assert.equal(r('{{ if .s }}yes{{ end }}', { s: new GoStruct({}, () => ({})) }), 'yes', 'structs are always true');
  });

  void it('ranges over lists, maps (sorted) and integers, with break/continue and else', () => {
    assert.equal(r('{{ range $i, $v := .l }}{{ $i }}={{ $v }};{{ end }}', { l: ['a', 'b'] }), '0=a;1=b;');
    assert.equal(r('{{ range $k, $v := .m }}{{ $k }}{{ $v }}{{ end }}', { m: { z: 1, a: 2 } }), 'a2z1');
    assert.equal(r('{{ range .l }}{{ . }}{{ else }}empty{{ end }}', { l: [] }), 'empty');
    assert.equal(r('{{ range 4 }}{{ if eq . 1 }}{{ continue }}{{ end }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}'), '02');
  });

  void it('supports with, variables, assignment and define/template', () => {
    assert.equal(r('{{ with .a }}{{ .b }}{{ else }}none{{ end }}', { a: { b: 'x' } }), 'x');
    assert.equal(r('{{ with .a }}{{ .b }}{{ else }}none{{ end }}', {}), 'none');
    assert.equal(r('{{ $x := 1 }}{{ range .l }}{{ $x = . }}{{ end }}{{ $x }}', { l: [2, 3] }), '3');
    assert.equal(r('{{ define "t" }}[{{ . }}]{{ end }}{{ template "t" .v }}', { v: 'in' }), '[in]');
  });

  void it('runs pipelines and parenthesised operands', () => {
    assert.equal(r('{{ .s | printf "%s-%d" "x" }}', { s: 7 }), 'x-7');
    assert.equal(r('{{ (index .l 1).name }}', { l: [{ name: 'a' }, { name: 'b' }] }), 'b');
    assert.equal(r('{{ .v | default "d" | upper }}', { v: '' }), 'D');
    assert.equal(r('{{ or .a .b "c" }} {{ and 1 0 2 }} {{ not .a }}', { a: '', b: 0 }), 'c 0 true');
  });

  void it('has Go builtins and the sprig basics', () => {
    assert.equal(r('{{ len .l }} {{ len .s }} {{ index .m "k" }} {{ slice .s 1 3 }}', { l: [1, 2], s: 'héllo', m: { k: 'v' } }), '2 6 v é');
    assert.equal(r('{{ eq .a "x" "y" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ ge "b" "a" }}', { a: 'y' }), 'true true true true');
    assert.equal(r('{{ toJSON .m }} {{ toJSON .nil }} {{ toJson .l }}', { m: { b: '<', a: [1] }, nil: null, l: ['&'] }), '{"a":[1],"b":"\\u003c"} {} ["\\u0026"]');
    assert.equal(r('{{ quote "a" }} {{ trimSuffix ".x" "a.x" }} {{ replace "a" "b" "aa" }} {{ join "," (list 1 2) }} {{ hasKey (dict "k" 1) "k" }}'), '"a" a bb 1,2 true');
    assert.equal(r('{{ js .s }}', { s: `a'b"c<d>e&f=g\\h\n` }), "a\\'b\\\"c\\u003Cd\\u003Ee\\u0026f\\u003Dg\\\\h\\u000A");
    assert.equal(jsEscape('vhost\\..*'), 'vhost\\\\..*');
  });

  void it('treats Go structs and protobuf enums like Go does', () => {
    const pc = new GoStruct({ ProxyAdminPort: 15000, Mode: new GoEnum('MUTUAL_TLS', 1) }, () => ({ proxyAdminPort: 15000 }), () => 'proxy_admin_port:15000');
    const d = { config: pc };
    assert.equal(r('{{ .config.ProxyAdminPort }} {{ .config.GetProxyAdminPort }} {{ .config.Mode }} {{ eq .config.Mode 1 }}', d), '15000 15000 MUTUAL_TLS true');
    assert.equal(r('{{ .config }} {{ toJson .config }}', d), 'proxy_admin_port:15000 {"proxyAdminPort":15000}');
    assert.throws(() => r('{{ .config.Nope }}', d), /can't evaluate field Nope/);
  });

  void it('formats printf verbs', () => {
    assert.equal(goSprintf('%s|%d|%q|%v|%5s|%-3d|%t|%x|%%', 'a', 42, 'q', [1], 'r', 7, true, 255), 'a|42|"q"|[1]|    r|7  |true|ff|%');
  });

  void it('reports errors with the template line', () => {
    assert.throws(() => r('x\n{{ if .a }}'), (e: unknown) => e instanceof TemplateError && /template: bootstrap:2: unexpected EOF in if/.test(e.message));
    assert.throws(() => r('{{ nosuchfn 1 }}'), /function "nosuchfn" not defined/);
    assert.throws(() => r('{{ .a'), /unclosed action/);
    assert.throws(() => r('{{ $undefined }}'), /undefined variable: \$undefined/);
    assert.throws(() => r('{{ end }}'), /unexpected \{\{end\}\}/);
    assert.throws(() => r('{{ index .l 5 }}', { l: [] }), /index out of range/);
  });
});
