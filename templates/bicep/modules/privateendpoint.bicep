// One private endpoint into the endpoints subnet, registered in its private DNS zone so the
// service's usual host name resolves to the private address inside the VNet.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('Private endpoint name.')
param name string

@description('Subnet the endpoint gets its address from.')
param subnetId string

@description('Resource id of the service behind the endpoint.')
param targetId string

@description('Sub-resource of the service: postgresqlServer, blob or vault.')
@allowed([
  'postgresqlServer'
  'blob'
  'vault'
])
param groupId string

@description('Private DNS zone that receives the endpoint A record.')
param dnsZoneId string

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource dnsGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: groupId
        properties: {
          privateDnsZoneId: dnsZoneId
        }
      }
    ]
  }
}

@description('Private endpoint id.')
output id string = endpoint.id
