-- Argo CD health of a Tether managed resource (AppService, CivisService, ApoloApp, UbiService,
-- PeakWebapp), read from the status Tether writes (docs/gitops.md has the rules and the verdict table):
--   Progressing  deleting; not reconciled yet; a generation not applied yet and still retried
--   Suspended    paused (tether.dev/paused: "true")
--   Degraded     Stalled=True (a human must act), or a failure that needs a human
--   Healthy      Ready=True for the current generation
local hs = {}
-- Failures a human must act on. The others (Unavailable, Throttled, InvalidResponse, KubernetesError)
-- pass by themselves: Tether retries them with backoff.
local needs_human = {
  InvalidSpec = true, Conflict = true, Unauthorized = true, PlatformError = true, ConnectionNotFound = true,
}

local function say(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.reason .. ": " .. condition.message
  end
  return condition.reason
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: Tether is removing the remote object"
  local conditions = (obj.status or {}).conditions or {}
  for _, condition in ipairs(conditions) do
    if condition.type == "Synced" and condition.status == "False" then
      hs.message = "Deleting, " .. say(condition)
    end
  end
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Tether to reconcile"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for Tether to observe generation " .. generation
  return hs
end

local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  conditions[condition.type] = condition
end
local ready, synced = conditions["Ready"], conditions["Synced"]
local reconciling, stalled = conditions["Reconciling"], conditions["Stalled"]

if synced ~= nil and synced.status == "False" and synced.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = synced.message
  if reconciling ~= nil and reconciling.status == "True" then
    hs.message = synced.message .. "; " .. (reconciling.message or "an edit is pending")
  end
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = say(stalled)
  return hs
end
for _, condition in ipairs({ synced, ready }) do
  if condition ~= nil and condition.status == "False" and needs_human[condition.reason] then
    hs.status = "Degraded"
    hs.message = say(condition)
    return hs
  end
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = say(reconciling)
  return hs
end
-- Ready=True counts only for the current generation: an older one still serving is not this spec.
if ready ~= nil and ready.status == "True"
    and (ready.observedGeneration == nil or generation == nil or ready.observedGeneration >= generation) then
  hs.status = "Healthy"
  hs.message = ready.message
  if synced ~= nil and synced.status == "False" then
    hs.message = "Serving; the last check failed and is retried: " .. say(synced)
  end
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = say(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
