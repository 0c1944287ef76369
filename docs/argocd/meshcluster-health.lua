-- Argo CD health check for dualmesh.io/MeshCluster (see docs/argocd.md).
--   Healthy      Ready=True, reported for the object's current generation
--   Progressing  no status yet, a generation dualmesh has not reconciled yet,
--                or Ready missing or Unknown
--   Degraded     Ready=False, with dualmesh's message: it names the failing
--                conditions and the first one's reason and finding
local hs = {}
local generation = obj.metadata.generation
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for dualmesh to report status"
  return hs
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for dualmesh to reconcile generation " .. generation
  return hs
end
local ready = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for Ready of generation " .. generation
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = ready.message or ("Ready is " .. tostring(ready.status))
return hs
