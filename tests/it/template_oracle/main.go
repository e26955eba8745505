// The oracle for strata's template engine: Go's own text/template with
// the functions Docker's client adds (docker/cli templates: json, split,
// join, title, lower, upper, pad, truncate), run on the same data.
//
// Input (stdin): a JSON array of {"t": template, "d": data, "h": bool}.
// Output (stdout): a JSON array of {"ok": output} or {"err": message}.
// Data is typed as Docker's structs type it: whole numbers are int,
// arrays of strings are []string, objects of strings map[string]string.
// With "h", the header functions Docker uses for table headers replace
// its own (each returns its first argument).
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type testCase struct {
	T string          `json:"t"`
	D json.RawMessage `json:"d"`
	H bool            `json:"h"`
}

type result struct {
	Ok  *string `json:"ok,omitempty"`
	Err *string `json:"err,omitempty"`
}

var basicFunctions = template.FuncMap{
	"json": func(v interface{}) string {
		buf := &bytes.Buffer{}
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
		return strings.TrimSpace(buf.String())
	},
	"split": strings.Split,
	"join":  strings.Join,
	"title": strings.Title,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"pad": func(source string, prefix, suffix int) string {
		if source == "" {
			return source
		}
		return strings.Repeat(" ", prefix) + source + strings.Repeat(" ", suffix)
	},
	"truncate": func(source string, length int) string {
		if len(source) < length {
			return source
		}
		return source[:length]
	},
}

var headerFunctions = template.FuncMap{
	"json":     func(v string) string { return v },
	"split":    func(v string, _ string) string { return v },
	"join":     func(v string, _ string) string { return v },
	"title":    func(v string) string { return v },
	"lower":    func(v string) string { return v },
	"upper":    func(v string) string { return v },
	"pad":      func(v string, _ int, _ int) string { return v },
	"truncate": func(v string, _ int) string { return v },
}

func typed(v interface{}) interface{} {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case []interface{}:
		strs := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				out := make([]interface{}, len(x))
				for i, e := range x {
					out[i] = typed(e)
				}
				return out
			}
			strs = append(strs, s)
		}
		return strs
	case map[string]interface{}:
		strs := map[string]string{}
		for k, e := range x {
			s, ok := e.(string)
			if !ok {
				out := map[string]interface{}{}
				for k, e := range x {
					out[k] = typed(e)
				}
				return out
			}
			strs[k] = s
		}
		return strs
	}
	return v
}

func main() {
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	results := make([]result, 0, len(cases))
	for _, c := range cases {
		var data interface{}
		if len(c.D) > 0 {
			dec := json.NewDecoder(bytes.NewReader(c.D))
			dec.UseNumber()
			if err := dec.Decode(&data); err != nil {
				panic(err)
			}
		}
		data = typed(data)
		funcs := basicFunctions
		if c.H {
			funcs = headerFunctions
		}
		var r result
		tmpl, err := template.New("").Funcs(funcs).Parse(c.T)
		if err == nil {
			var out bytes.Buffer
			err = tmpl.Execute(&out, data)
			if err == nil {
				s := out.String()
				r.Ok = &s
			}
		}
		if err != nil {
			s := err.Error()
			r.Err = &s
		}
		results = append(results, r)
	}
	_ = json.NewEncoder(os.Stdout).Encode(results)
}
