// Workflows to start from. They name the embedded defaults' mock models and a
// collection called `handbook`: change them to yours in the editor.

export const TEMPLATES = [
  {
    id: "blank",
    title: "Blank: a start node",
    doc: {
      inputs: { question: { type: "string", required: true } },
      nodes: [{ id: "start", type: "start", position: { x: 40, y: 120 } }],
      edges: [],
    },
  },
  {
    id: "rag",
    title: "RAG with a score-based branch",
    doc: {
      inputs: { question: { type: "string", required: true } },
      nodes: [
        { id: "start", type: "start", position: { x: 40, y: 120 } },
        { id: "search", type: "retrieval", position: { x: 280, y: 120 },
          config: { collections: ["handbook"], query: "{{ start.question }}", k: 4 } },
        { id: "check", type: "if_else", position: { x: 520, y: 120 },
          config: { cases: [{ label: "found", conditions: [{ variable: "{{ search.top_score }}", operator: "ge", value: 0.5 }] }] } },
        { id: "reply", type: "llm", position: { x: 780, y: 40 },
          config: { model: "mock-chat", messages: [
            { role: "system", content: "Answer only from this context:\n{{ search.text }}" },
            { role: "user", content: "{{ start.question }}" },
          ] } },
        { id: "say", type: "answer", position: { x: 1040, y: 40 }, config: { text: "{{ reply.text }}" } },
        { id: "sorry", type: "answer", position: { x: 780, y: 240 },
          config: { text: "The handbook says nothing about {{ start.question }}." } },
      ],
      edges: [
        { from: "start", to: "search" },
        { from: "search", to: "check" },
        { from: "check", to: "reply", branch: "found" },
        { from: "check", to: "sorry", branch: "else" },
        { from: "reply", to: "say" },
      ],
    },
  },
  {
    id: "compare",
    title: "Two models compared in parallel",
    doc: {
      inputs: { prompt: { type: "string", required: true } },
      nodes: [
        { id: "start", type: "start", position: { x: 40, y: 120 } },
        { id: "first", type: "llm", position: { x: 300, y: 30 },
          config: { model: "mock-chat", messages: [{ role: "user", content: "{{ start.prompt }}" }] } },
        { id: "second", type: "llm", position: { x: 300, y: 220 },
          config: { model: "mock-instant", messages: [{ role: "user", content: "{{ start.prompt }}" }] } },
        { id: "both", type: "end", position: { x: 580, y: 120 },
          config: { outputs: { first: "{{ first.text }}", second: "{{ second.text }}" } } },
      ],
      edges: [
        { from: "start", to: "first" },
        { from: "start", to: "second" },
        { from: "first", to: "both" },
        { from: "second", to: "both" },
      ],
    },
  },
  {
    id: "summarise",
    title: "Summarise each item of a list",
    doc: {
      inputs: { items: { type: "array", required: true, description: "texts to summarise" } },
      nodes: [
        { id: "start", type: "start", position: { x: 40, y: 100 } },
        { id: "each", type: "map", position: { x: 300, y: 100 },
          config: {
            items: "{{ start.items }}", concurrency: 4,
            nodes: [
              { id: "sum", type: "llm", config: { model: "mock-chat", messages: [
                { role: "user", content: "Summarise in one sentence: {{ each.item }}" },
              ] } },
            ],
            edges: [],
            output: "{{ sum.text }}",
          } },
        { id: "list", type: "template", position: { x: 560, y: 100 },
          config: { template: "{% for s in each.results %}- {{ s }}\n{% endfor %}" } },
        { id: "say", type: "answer", position: { x: 820, y: 100 }, config: { text: "{{ list.text }}" } },
      ],
      edges: [
        { from: "start", to: "each" },
        { from: "each", to: "list" },
        { from: "list", to: "say" },
      ],
    },
  },
];
