/// How many shards one planner should hold when `members` planners are alive: the shards
/// split as evenly as they go, the first `shards mod n` members (in sorted order) taking one
/// more, so the targets of all members add up to the shard count exactly and every member
/// computes the same split from the same list.
public enum ShardShare {
    public static func target(shards: Int, members: [String], me: String) -> Int {
        var sorted = members.sorted()
        if !sorted.contains(me) {
            sorted.append(me)
            sorted.sort()
        }
        let rank = sorted.firstIndex(of: me)!
        let n = sorted.count
        return shards / n + (rank < shards % n ? 1 : 0)
    }
}
