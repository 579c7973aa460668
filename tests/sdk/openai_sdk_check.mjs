// The official OpenAI Node SDK against a base URL (the gateway, or meridian-mock directly):
// chat non-streaming and streaming, completions, embeddings, models. Exits non-zero on failure.
import OpenAI from "openai";

const baseURL = process.argv[2];
const model = process.argv[3] ?? "mock-llm";
const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: 0, timeout: 10000 });
const fail = (what) => { console.error("FAIL:", what); process.exit(1); };

const chat = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Say hello" }], max_tokens: 5 });
if (chat.object !== "chat.completion" || !chat.choices?.[0]?.message?.content) fail("chat");
if (chat.usage?.completion_tokens !== 5) fail(`chat usage ${JSON.stringify(chat.usage)}`);

const stream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Count" }], max_tokens: 6, stream: true,
  stream_options: { include_usage: true } });
let text = "", chunks = 0, usage = null;
for await (const chunk of stream) {
  chunks++;
  text += chunk.choices?.[0]?.delta?.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
if (chunks < 6 || !text || usage?.completion_tokens !== 6) fail(`stream chunks=${chunks} usage=${JSON.stringify(usage)}`);

const completion = await client.completions.create({ model, prompt: "Once", max_tokens: 3 });
if (!completion.choices?.[0]?.text) fail("completions");
const emb = await client.embeddings.create({ model, input: ["a", "b"] });
if (emb.data?.length !== 2 || !(emb.data[0].embedding.length > 0)) fail("embeddings");
const models = await client.models.list();
if (!models.data?.length) fail("models");

try {
  await client.chat.completions.create({ model, messages: [], max_tokens: 1, stream: false },
                                       { path: "/nope" });
} catch (e) { /* the SDK reports errors as exceptions; exercised in the gateway test */ }
console.log(`ok: chat, stream (${chunks} chunks), completions, embeddings, models via ${baseURL}`);
