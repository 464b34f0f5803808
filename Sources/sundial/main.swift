import Foundation
import SundialCLI

// Line-buffer stdout so progress appears promptly even when redirected to a file.
setvbuf(stdout, nil, _IOLBF, 0)
await SundialCommand.runMain()
