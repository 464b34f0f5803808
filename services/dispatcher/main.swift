import SundialServer

// Configuration comes from SUNDIAL_* environment variables; see README.md beside this file.
await ServiceMain.run([.dispatcher])
