// Drives PostHog's own agent API client (@posthog/agent/posthog-api) against a taskruns server.
// Configuration comes from the environment; each step asserts what the client got back, and the
// last line printed is a JSON summary that the Python test checks against the database.
import assert from "node:assert/strict";
import { PostHogAPIClient, PostHogAPIError } from "@posthog/agent/posthog-api";

const { API_URL, PROJECT_ID, TASK_ID, RUN_ID, CLOUD_RUN_ID, API_KEY } = process.env;
const client = (getApiKey, refreshApiKey) =>
  new PostHogAPIClient({ apiUrl: API_URL, projectId: Number(PROJECT_ID), getApiKey, refreshApiKey });
const agent = client(async () => API_KEY);
const steps = [];
const step = async (name, fn) => {
  await fn();
  steps.push(name);
};

await step("get task", async () => {
  const task = await agent.getTask(TASK_ID);
  assert.equal(task.id, TASK_ID);
});
await step("get run", async () => {
  const run = await agent.getTaskRun(TASK_ID, RUN_ID);
  assert.equal(run.id, RUN_ID);
  assert.equal(run.task, TASK_ID);
});
await step("update status", async () => {
  const run = await agent.updateTaskRun(TASK_ID, RUN_ID, { status: "in_progress" });
  assert.equal(run.status, "in_progress");
});
await step("merge state twice", async () => {
  await agent.updateTaskRun(TASK_ID, RUN_ID, { state: { first: 1, doomed: true } });
  const run = await agent.updateTaskRun(TASK_ID, RUN_ID, { state: { second: { nested: [2] } } });
  assert.deepEqual(run.state, { first: 1, doomed: true, second: { nested: [2] } });
});
await step("remove keys", async () => {
  const run = await agent.updateTaskRun(TASK_ID, RUN_ID, { state_remove_keys: ["doomed", "absent"] });
  assert.deepEqual(run.state, { first: 1, second: { nested: [2] } });
});
await step("append to state", async () => {
  await agent.updateTaskRun(TASK_ID, RUN_ID, { state_append: { gateway_request_ids: "req-1" } });
  await agent.updateTaskRun(TASK_ID, RUN_ID, { state_append: { gateway_request_ids: "req-2" } });
  const run = await agent.updateTaskRun(TASK_ID, RUN_ID, { state_append: { gateway_request_ids: "req-1" } });
  assert.deepEqual(run.state.gateway_request_ids, ["req-1", "req-2"]); // a unique key on the server
});
await step("set stage, branch, output, error_message", async () => {
  const run = await agent.updateTaskRun(TASK_ID, RUN_ID, {
    stage: "build",
    branch: "posthog-code/fix-flaky-test",
    output: { pr_url: "https://example.invalid/pr/1" },
    error_message: null,
  });
  assert.equal(run.stage, "build");
  assert.equal(run.branch, "posthog-code/fix-flaky-test");
  assert.deepEqual(run.output, { pr_url: "https://example.invalid/pr/1" });
  assert.equal(run.error_message, null);
});
await step("hand off to local", async () => {
  const before = await agent.getTaskRun(TASK_ID, CLOUD_RUN_ID);
  assert.equal(before.environment, "cloud");
  const run = await agent.updateTaskRun(TASK_ID, CLOUD_RUN_ID, { environment: "local" });
  assert.equal(run.environment, "local");
});
await step("set output", async () => {
  const run = await agent.setTaskRunOutput(TASK_ID, RUN_ID, { output: { pr_url: "https://example.invalid/pr/2" } });
  assert.deepEqual(run.output, { pr_url: "https://example.invalid/pr/2" });
});
const entries = [
  { type: "notification", timestamp: "2026-11-28T10:00:00Z", notification: { method: "start" } },
  { type: "notification", timestamp: "2026-11-28T10:00:01Z", notification: { method: "text", params: { t: "ünïcode ✓" } } },
];
await step("append log and read it back", async () => {
  await agent.appendTaskRunLog(TASK_ID, RUN_ID, entries.slice(0, 1));
  const run = await agent.appendTaskRunLog(TASK_ID, RUN_ID, entries.slice(1));
  assert.ok(run.log_url, "log_url is set once a log exists");
  assert.deepEqual(await agent.fetchTaskRunLogs(run), entries);
});
await step("retry once on 401 with a refreshed key", async () => {
  let refreshes = 0;
  const stale = client(async () => "trk_stale", async () => (refreshes++, API_KEY));
  const run = await stale.getTaskRun(TASK_ID, RUN_ID);
  assert.equal(run.id, RUN_ID);
  assert.equal(refreshes, 1);
});
await step("bad key ends in 401", async () => {
  let refreshes = 0;
  const bad = client(async () => "trk_badbadbadbad", async () => (refreshes++, "trk_stillbad"));
  await assert.rejects(bad.getTaskRun(TASK_ID, RUN_ID), (error) => {
    assert.ok(error instanceof PostHogAPIError);
    assert.equal(error.status, 401);
    return true;
  });
  assert.equal(refreshes, 1);
});

console.log(JSON.stringify({ steps }));
