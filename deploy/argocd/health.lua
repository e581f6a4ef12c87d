-- Argo CD health check for lockgate.dev/SchemaMigration.
-- Install it as resource.customizations.health.lockgate.dev_SchemaMigration in argocd-cm
-- (see argocd-cm.yaml beside this file and docs/argocd.md). Lua 5.1, standard libraries only.
--
-- Healthy:     Ready is True for the current generation: the expand phase of spec.version
--              succeeded and the gate is open. Ready does NOT wait for contract: contract
--              runs only after the gated Deployments (a later sync wave) rolled out, so a
--              wave that waited for it would deadlock.
-- Degraded:    Stalled is True (a migration Job failed; its message says what to do).
-- Progressing: no status yet, status older than the spec, or expanding/rolling back.
-- Suspended is never returned: waiting for the contract delay or approval is Healthy
-- (the message says so), so `argocd app wait --health` and sync waves go on.
local hs = {}

local function condition(conditions, kind)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

-- A condition written for an older generation says nothing about the current spec.
local function current(c, generation)
  if c == nil then
    return false
  end
  return c.observedGeneration == nil or generation == nil or c.observedGeneration >= generation
end

local function with_phase(status, text)
  if status.phase ~= nil and status.phase ~= "" then
    if text == nil or text == "" then
      return status.phase
    end
    return status.phase .. ": " .. text
  end
  return text or ""
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the lockgate operator to report status"
  return hs
end

if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the lockgate operator to observe generation " .. tostring(generation)
  if status.observedGeneration ~= nil then
    hs.message = hs.message .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
  end
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" and current(stalled, generation) then
  hs.status = "Degraded"
  hs.message = stalled.message or stalled.reason or "Stalled"
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = with_phase(status, "Waiting for the Ready condition")
  return hs
end
if not current(ready, generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition of generation " .. tostring(generation)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = with_phase(status, ready.message or ready.reason)
  -- Waiting for contract is healthy, but say what it waits for (a delay, or an approval).
  local contracted = condition(status.conditions, "Contracted")
  if (status.phase == "ContractPending" or status.phase == "AwaitingApproval") and contracted ~= nil
      and contracted.message ~= nil and contracted.message ~= "" then
    hs.message = hs.message .. "; " .. contracted.message
  end
  return hs
end

if status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = ready.message or "Failed"
  return hs
end

hs.status = "Progressing"
local reconciling = condition(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" and reconciling.message ~= nil and reconciling.message ~= "" then
  hs.message = with_phase(status, reconciling.message)
else
  hs.message = with_phase(status, ready.message or ready.reason or "Waiting for the Ready condition")
end
return hs
