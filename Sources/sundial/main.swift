import SundialCLI

await SundialCommand.runMain()
