// Node.js 20 lacks Promise.withResolvers (Node 22+), which a transitive
// dependency of libp2p 2.x (it-queue, through mortice) calls. This is the
// standard polyfill; on Node 22 and later it does nothing.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => {
      resolve = res
      reject = rej
    })
    return { promise, resolve, reject }
  }
}
