"""What the front ends call: the provider service (announce, remove, lookup) and the tracker
service (announce, peers, scrape, stats). Front ends map their protocol onto these and never
import each other or the node; the node wires the services to the store and the cluster role.
"""
