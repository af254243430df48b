-- Argo CD health of a Tether managed resource (AppService, CivisService, ApoloApp, UbiService,
-- PeakWebapp), read from its kstatus conditions. Degraded only for the reasons a human must act on;
-- throttling, an unreachable platform or a remote object still starting are Progressing.
local hs = {}
local terminal = { InvalidSpec = true, Conflict = true, Unauthorized = true, PlatformError = true }

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Tether to reconcile"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for Tether to apply generation " .. generation
  return hs
end

local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  conditions[condition.type] = condition
end
local ready, synced, stalled = conditions["Ready"], conditions["Synced"], conditions["Stalled"]

if synced ~= nil and synced.status == "False" and synced.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = synced.message
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
for _, condition in ipairs({ synced, ready }) do
  if condition ~= nil and condition.status == "False" and terminal[condition.reason] then
    hs.status = "Degraded"
    hs.message = condition.reason .. ": " .. (condition.message or "")
    return hs
  end
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = ready.reason .. ": " .. (ready.message or "")
else
  hs.message = "Waiting for the Ready condition"
end
return hs
