// Publishes one devreg command with kafkajs: node kafka_publish.js BOOTSTRAP TOPIC KEY VALUE
// kafkajs's default partitioner is Java's murmur2, the one devreg checks commands against.
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic, key, value] = process.argv.slice(2);

(async () => {
  const kafka = new Kafka({ clientId: "devreg-test", brokers: [bootstrap], logLevel: logLevel.WARN });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const sent = await producer.send({ topic, acks: -1, messages: [{ key, value }] });
  console.log(JSON.stringify(sent));
  await producer.disconnect();
})().catch((error) => {
  console.error(`kafkajs: ${error.message}`);
  process.exit(1);
});
