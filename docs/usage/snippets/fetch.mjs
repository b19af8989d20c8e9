const url = process.env.RAGWAY_URL;
const model = process.env.RAGWAY_MODEL ?? "llama3.2";
const headers = {
  Authorization: `Bearer ${process.env.RAGWAY_API_KEY}`,
  "Content-Type": "application/json",
};

// One answer
const reply = await fetch(`${url}/api/chat/completions`, {
  method: "POST",
  headers,
  body: JSON.stringify({ model, messages: [{ role: "user", content: "Why is the sky blue?" }] }),
});
if (!reply.ok) throw new Error(`${reply.status}: ${(await reply.json()).detail}`);
console.log((await reply.json()).choices[0].message.content);

// Streamed: server-sent events, one `data: {...}` line each, then `data: [DONE]`
const stream = await fetch(`${url}/api/chat/completions`, {
  method: "POST",
  headers,
  body: JSON.stringify({
    model,
    stream: true,
    messages: [{ role: "user", content: "Tell me a story." }],
  }),
});
const decoder = new TextDecoder();
let buffer = "";
for await (const bytes of stream.body) {
  buffer += decoder.decode(bytes, { stream: true });
  const lines = buffer.split("\n");
  buffer = lines.pop();
  for (const line of lines) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    const event = JSON.parse(line.slice(6));
    if (event.error) throw new Error(event.error.message);
    process.stdout.write(event.choices?.[0]?.delta?.content ?? "");
  }
}
process.stdout.write("\n");
