package main

// Argo CD's health assessment of one object, re-written (Argo CD itself does not build here) from
// github.com/argoproj/argo-cd, master of 2026-08:
//
//   - util/settings/settings.go GetResourceOverrides, appendResourceOverridesFromSplitKeys and
//     convertToOverrideKey: how argocd-cm keys become resource overrides;
//   - util/lua/lua.go GetHealthScript, GetConfigMapKey, getWildcardHealthOverrideLua: which script an
//     object gets (built-in scripts shipped with Argo CD are not mirrored: none exists for tether.dev);
//   - util/lua/lua.go runLuaWithResourceActionParameters, ExecuteHealthLua, isValidHealthStatusCode and
//     decodeValue: the Lua VM, the conversion of the object into the global obj and of the result back;
//   - gitops-engine/pkg/health/health.go GetResourceHealth: the deletion check made before any script.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/glob"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/yaml"
)

// healthStatus is gitops-engine's health.HealthStatus.
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// resourceOverride holds the health part of Argo CD's v1alpha1.ResourceOverride.
type resourceOverride struct {
	HealthLua   string `json:"health.lua,omitempty"`
	UseOpenLibs bool   `json:"health.lua.useOpenLibs,omitempty"`
}

// resourceOverrides is keyed like Argo CD's: "<group>/<Kind>", "<Kind>" for the core group, or a glob.
type resourceOverrides map[string]resourceOverride

const customizationsKey = "resource.customizations"

// loadArgoCDConfigMap reads the data: of an argocd-cm ConfigMap (or patch) as Argo CD's SettingsManager does:
// first the legacy resource.customizations YAML blob, then the split keys
// resource.customizations.<type>.<group>_<Kind> (or .<Kind>, or .all for every kind).
func loadArgoCDConfigMap(path string) (resourceOverrides, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return nil, err
	}
	if len(cm.Data) == 0 {
		return nil, errors.New("no data: map")
	}
	overrides := resourceOverrides{}
	if blob := cm.Data[customizationsKey]; blob != "" {
		if err := yaml.Unmarshal([]byte(blob), &overrides); err != nil {
			return nil, fmt.Errorf("%s: %w", customizationsKey, err)
		}
	}
	keys := make([]string, 0, len(cm.Data))
	for k := range cm.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, customizationsKey) {
			continue
		}
		parts := strings.SplitN(k, ".", 4)
		if len(parts) < 4 {
			continue
		}
		var key string
		switch groupKind := strings.Split(parts[3], "_"); {
		case len(groupKind) == 2:
			key = groupKind[0] + "/" + groupKind[1]
		case len(groupKind) == 1 && parts[3] != "":
			key = parts[3]
		default:
			return nil, fmt.Errorf("%s: group kind should be in format `resource.customizations.<type>.<group_kind>` or `resource.customizations.<type>.<kind>`", k)
		}
		if key == "all" {
			key = "*/*"
		}
		override := overrides[key]
		switch parts[2] {
		case "health":
			override.HealthLua = cm.Data[k]
		case "useOpenLibs":
			if override.UseOpenLibs, err = strconv.ParseBool(cm.Data[k]); err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
		case "actions", "ignoreDifferences", "ignoreResourceUpdates", "knownTypeFields":
			// Not about health.
		default:
			return nil, fmt.Errorf("%s: resource customization type %s not supported", k, parts[2])
		}
		overrides[key] = override
	}
	return overrides, nil
}

// healthScript returns the script Argo CD runs for a kind: the exact "<group>/<Kind>" key, else the first
// glob key matching it (Argo CD walks a Go map, so which of several matching globs wins is random there;
// here it is the first in sorted order).
func (o resourceOverrides) healthScript(gvk schema.GroupVersionKind) (key, script string, useOpenLibs bool) {
	key = gvk.Kind
	if gvk.Group != "" {
		key = gvk.Group + "/" + gvk.Kind
	}
	if override, ok := o[key]; ok && override.HealthLua != "" {
		return key, override.HealthLua, override.UseOpenLibs
	}
	patterns := make([]string, 0, len(o))
	for pattern := range o {
		patterns = append(patterns, pattern)
	}
	slices.Sort(patterns)
	for _, pattern := range patterns {
		if g, err := glob.Compile(pattern); err == nil && g.Match(key) && o[pattern].HealthLua != "" {
			return pattern, o[pattern].HealthLua, o[pattern].UseOpenLibs
		}
	}
	return key, "", false
}

// argoCDHealth is gitops-engine's GetResourceHealth with the Lua overrides: an error is what Argo CD shows as
// health Unknown with the error as message. An empty Status is what Argo CD shows as no health.
func argoCDHealth(obj *unstructured.Unstructured, overrides resourceOverrides) (healthStatus, error) {
	if obj.GetDeletionTimestamp() != nil && !slices.Contains(obj.GetFinalizers(), "argocd.argoproj.io/hook-finalizer") {
		return healthStatus{Status: "Progressing", Message: "Pending deletion"}, nil
	}
	key, script, useOpenLibs := overrides.healthScript(obj.GroupVersionKind())
	if script == "" {
		return healthStatus{Message: fmt.Sprintf("no health script for %s in the argocd-cm: Argo CD gives it no health (its built-in checks are not mirrored)", key)}, nil
	}
	return executeHealthLua(obj, script, useOpenLibs)
}

// executeHealthLua mirrors util/lua/lua.go runLuaWithResourceActionParameters + ExecuteHealthLua.
func executeHealthLua(obj *unstructured.Unstructured, script string, useOpenLibs bool) (healthStatus, error) {
	// Scripts from argocd-cm get no standard library unless resource.customizations.useOpenLibs.<group>_<Kind>
	// is true: only package, base, table and the safe os below (so no string, math, io, os, coroutine, debug).
	l := lua.NewState(lua.Options{SkipOpenLibs: !useOpenLibs})
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
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return healthStatus{}, fmt.Errorf("opening Lua library %s: %w", lib.name, err)
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), 1*time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", decodeValue(l, obj.Object))

	// Argo CD caches the compiled chunk (LoadString) and PCalls it: the same as DoString.
	if err := l.DoString(script); err != nil {
		if apiErr, ok := errors.AsType[*lua.ApiError](err); ok && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
			return healthStatus{}, apiErr
		}
		return healthStatus{}, err
	}
	switch ret := l.Get(-1); ret.Type() {
	case lua.LTNil:
		return healthStatus{}, nil
	case lua.LTTable:
		data, err := luajson.Encode(ret)
		if err != nil {
			return healthStatus{}, err
		}
		var hs healthStatus
		if err := json.Unmarshal(data, &hs); err != nil {
			// An empty table encodes as [], and Argo CD takes any type error as an empty health.
			if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
				return healthStatus{}, nil
			}
			return healthStatus{}, err
		}
		switch hs.Status {
		case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
			return hs, nil
		}
		return healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	default:
		return healthStatus{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
}

// decodeValue mirrors util/lua/lua.go decodeValue (layeh.com/gopher-json's DecodeValue plus the integer
// types client-go's decoding produces). Any other type becomes nil.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}
