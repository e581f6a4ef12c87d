package main

import (
	"context"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Argo CD's health verdicts; any other status reads Unknown (util/lua/lua.go, ExecuteHealthLua).
var argoStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// argoHealth runs a health script as Argo CD's application controller runs resource.customizations
// (util/lua/lua.go, runLua): gopher-lua with only package, base, table and a safe os opened (no
// string, math, io or debug), the object as the global `obj`, one second to finish.
func argoHealth(obj map[string]any, script string) (result, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return result{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return result{}, err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return result{}, fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	status, message := table.RawGetString("status"), table.RawGetString("message")
	if !argoStatuses[status.String()] {
		return result{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	if message == lua.LNil {
		return result{Status: status.String()}, nil
	}
	return result{Status: status.String(), Message: message.String()}, nil
}

// openSafeOs is Argo CD's os for scripts (util/lua/oslib_safe.go): only time and date, also what
// require("os") returns.
func openSafeOs(l *lua.LState) int {
	lua.OpenOs(l)
	full := l.GetGlobal(lua.OsLibName).(*lua.LTable)
	safe := l.NewTable()
	for _, name := range []string{"time", "date"} {
		safe.RawSetString(name, full.RawGetString(name))
	}
	l.SetGlobal(lua.OsLibName, safe)
	l.GetField(l.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable).RawSetString(lua.OsLibName, safe)
	l.Push(safe)
	return 1
}

// toLua converts the object as Argo CD's decodeValue does: maps and lists become tables (lists
// 1-indexed), numbers LNumber, null nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	}
	return lua.LNil
}
