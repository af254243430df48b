-- Argo CD health of a Tether Connection or ClusterConnection: whether its credential Secrets are found
-- and the platform accepts them (Tether checks with one authenticated call; docs/gitops.md).
--   Progressing  not checked yet, or the platform did not answer (retried)
--   Degraded     Stalled=True (wrong or missing credentials, refused by the platform), or a Secret missing
--   Healthy      Ready=True for the current generation
local hs = {}

local function say(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.reason .. ": " .. condition.message
  end
  return condition.reason
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Tether to check the credentials"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for Tether to check generation " .. generation
  return hs
end

local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  conditions[condition.type] = condition
end
local ready, stalled = conditions["Ready"], conditions["Stalled"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = say(stalled)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if ready ~= nil and ready.reason == "ConnectionNotFound" then
  hs.status = "Degraded"
  hs.message = say(ready)
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = say(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
